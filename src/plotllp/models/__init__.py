"""Networks that map inputs to class logits. Any ``torch.nn.Module`` that does so works with every stage."""

from __future__ import annotations

import contextlib

from torch import nn

from ..errors import LLPInputError
from .convnets import ConvLarge, Normalized, SmallCNN, Standardized, WideResNet, features
from .gan import ConvGenerator, GANDiscriminator, MLPGenerator, build_generator, sample_noise
from .mlp import MLP

__all__ = ["MLP", "ConvLarge", "WideResNet", "SmallCNN", "Normalized", "Standardized", "GANDiscriminator", "ConvGenerator",
           "MLPGenerator", "build_model", "build_generator", "sample_noise", "features", "frozen_bn_stats", "MODELS"]


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module):
    """Inside, BatchNorm layers in training mode normalise with the batch's statistics but do not
    update their running statistics (LLP-VAT's ``_disable_tracking_bn_stats``); restored on exit."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.track_running_stats for m in norms]
    for m in norms:
        m.track_running_stats = False
    try:
        yield model
    finally:
        for m, flag in zip(norms, saved):
            m.track_running_stats = flag


def _image(cls, **kw):
    def build(shape, k, width=64, depth=3):
        if len(shape) != 3:
            raise LLPInputError(f"model needs images (channels, height, width), got inputs of shape {tuple(shape)}")
        return cls(in_channels=shape[0], num_classes=k, **kw)
    return build


#: name -> builder(input_shape, num_classes, width, depth)
MODELS = {
    "mlp": lambda shape, k, width=64, depth=3: MLP.for_input(shape, k, width=width, depth=depth),
    "conv-large": _image(ConvLarge),
    "wrn-28-2": _image(WideResNet, depth=28, widen=2),
    "small-cnn": _image(SmallCNN),
    "gan-d": _image(GANDiscriminator),
}


def build_model(name: str, input_shape, num_classes: int, *, width: int = 64, depth: int = 3,
                normalization=None) -> nn.Module:
    """A fresh network called ``name`` for inputs of ``input_shape`` (without the batch dimension).

    With ``normalization = (mean, std)`` (raw uint8 images), the network is wrapped in :class:`Normalized`;
    with ``{"mean": ..., "std": ...}`` (feature tables), in :class:`Standardized`.
    """
    if name not in MODELS:
        raise LLPInputError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")
    net = MODELS[name](tuple(input_shape), num_classes, width=width, depth=depth)
    if normalization is None:
        return net
    if isinstance(normalization, dict):
        return Standardized(net, normalization["mean"], normalization["std"])
    return Normalized(net, *normalization)
