"""Errors that plotllp raises on purpose.

Every error a user can cause (bad proportions, bad bag ids, a missing file, an unknown option)
is a :class:`PlotLLPError`, so the command line turns it into one line and a non-zero exit.
The input errors also derive from :class:`ValueError`, as scikit-learn's validation errors do,
so library callers can catch them the usual way.
"""

from __future__ import annotations


class PlotLLPError(Exception):
    """Base class of the errors plotllp reports to users as one line."""


class LLPInputError(PlotLLPError, ValueError):
    """Invalid user input: proportions, bag ids, shapes, options, configuration."""


class DataFileError(PlotLLPError, OSError):
    """A data file is missing, unreadable or not in the expected format."""


class TrainingDivergedError(PlotLLPError, RuntimeError):
    """A loss or a prediction became NaN or infinite: training is stopped, never continued."""


class LauncherGone(KeyboardInterrupt):
    """The ``plotllp sweep`` that started this run has gone (killed): the run stops as if interrupted,
    keeping its last epoch's checkpoint, rather than train on beside a rerun of the sweep."""
