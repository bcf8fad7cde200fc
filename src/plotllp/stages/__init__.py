"""Training stages on one interface: first stages (DLLP, LLP-VAT, LLP-GAN) and the PLOT second stage."""

from .base import Stage
from .dllp import DLLP
from .gan import GAN
from .plot import PLOT
from .vat import VAT

__all__ = ["Stage", "DLLP", "VAT", "GAN", "PLOT", "FIRST_STAGES"]

#: --first-stage name -> class
FIRST_STAGES = {"dllp": DLLP, "vat": VAT, "gan": GAN}
