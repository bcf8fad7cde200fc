"""Training stages on one interface: first stages (DLLP) and the PLOT second stage."""

from .base import Stage
from .dllp import DLLP
from .plot import PLOT

__all__ = ["Stage", "DLLP", "PLOT", "FIRST_STAGES"]

#: --first-stage name -> class
FIRST_STAGES = {"dllp": DLLP}
