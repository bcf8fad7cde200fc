"""plotllp: learning from label proportions with a PLOT second stage."""
__version__ = "0.1.0"
