"""Configurations and runners of the paper's experiments (tables and figures)."""
