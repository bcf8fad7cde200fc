"""LLP-GAN's networks (Liu et al., 2019; SPEC section 3): the discriminator, a K-way classifier whose
log-sum-exp of logits is the real/fake score, and the generator; plus an MLP generator for flat data.

The discriminator is an ordinary classifier (``forward`` gives K logits, ``features`` the pooled
penultimate features): after the GAN stage, PLOT continues to train it. Any classifier of
:mod:`plotllp.models` can be the discriminator; :class:`GANDiscriminator` is the paper's.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import LLPInputError


def _conv(cin, cout, k, stride=1):
    return [nn.Conv2d(cin, cout, k, stride, k // 2), nn.LeakyReLU(0.2)]


class GANDiscriminator(nn.Module):
    """LLP-GAN's discriminator for 32x32 images: input dropout 0.2; 3x3 conv 64, 64, 64 (stride 2);
    dropout 0.5; 3x3 conv 128, 128, 128 (stride 2); dropout 0.5; 3x3 conv 256, 1x1 conv 128, 1x1 conv 64
    (leaky ReLU 0.2 after each; every conv "same"-padded, so the features are pooled over 8x8, as in
    LLP-GAN's public code, ``good-llp-gan.py``); global average pool; linear to K. No normalisation
    layers, as there: real and generated batches pass separately, and batch statistics would tell them
    apart."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Dropout(0.2),
            *_conv(in_channels, 64, 3), *_conv(64, 64, 3), *_conv(64, 64, 3, stride=2), nn.Dropout(0.5),
            *_conv(64, 128, 3), *_conv(128, 128, 3), *_conv(128, 128, 3, stride=2), nn.Dropout(0.5),
            *_conv(128, 256, 3), *_conv(256, 128, 1), *_conv(128, 64, 1),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))


class ConvGenerator(nn.Module):
    """LLP-GAN's generator: :math:`z \\sim U[-1, 1]^{100}` -> dense to 512 x (H/8) x (W/8), BatchNorm, leaky
    ReLU -> 5x5 transposed convs with stride 2 to 256 and 128 channels (BatchNorm, leaky ReLU 0.2) -> C
    channels, tanh. For sizes not divisible by 8 (28x28) it starts at H/4 with one transposed conv fewer.
    Outputs pixels in [0, 255] (float), the units of the raw images the discriminator reads."""

    def __init__(self, image_shape, z_dim: int = 100):
        super().__init__()
        c, h, w = image_shape
        ups = 3 if h % 8 == 0 and w % 8 == 0 else 2
        if h % 2 ** ups or w % 2 ** ups:
            raise LLPInputError(f"the conv generator needs image sides divisible by 4, got {h}x{w}; use --gan-generator mlp")
        widths = [512, 256, 128][-ups:]
        self.z_dim, self.start = z_dim, (widths[0], h // 2 ** ups, w // 2 ** ups)
        self.fc = nn.Sequential(nn.Linear(z_dim, math.prod(self.start)), nn.BatchNorm1d(math.prod(self.start)),
                                nn.LeakyReLU(0.2))
        layers = []
        for i in range(ups):
            cout = widths[i + 1] if i + 1 < ups else c
            layers.append(nn.ConvTranspose2d(widths[i], cout, 5, 2, padding=2, output_padding=1))
            layers += [nn.BatchNorm2d(cout), nn.LeakyReLU(0.2)] if i + 1 < ups else [nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        x = self.net(self.fc(z).view(-1, *self.start))
        return (x.float() + 1.0) * 127.5


class MLPGenerator(nn.Module):
    """A small generator for flat data and for images beside an MLP classifier:
    :math:`z \\sim U[-1, 1]^{d_z}` -> two hidden layers (BatchNorm, leaky ReLU 0.2) -> the data's shape;
    a linear output for features, or ``255 * sigmoid`` for pixels (``pixels=True``)."""

    def __init__(self, out_shape, z_dim: int = 100, width: int = 128, pixels: bool = False):
        super().__init__()
        self.z_dim, self.out_shape, self.pixels = z_dim, tuple(out_shape), bool(pixels)
        self.net = nn.Sequential(
            nn.Linear(z_dim, width), nn.BatchNorm1d(width), nn.LeakyReLU(0.2),
            nn.Linear(width, width), nn.BatchNorm1d(width), nn.LeakyReLU(0.2),
            nn.Linear(width, math.prod(self.out_shape)))

    def forward(self, z):
        out = self.net(z).view(-1, *self.out_shape)
        return 255.0 * torch.sigmoid(out.float()) if self.pixels else out


def build_generator(input_shape, *, pixels: bool, z_dim: int = 100, kind: str = "auto") -> nn.Module:
    """The generator for inputs of ``input_shape``. ``kind``: ``conv`` (:class:`ConvGenerator`, images
    only), ``mlp`` (:class:`MLPGenerator`; 500 hidden units for pixels, 128 for features), or ``auto``:
    conv for raw images of shape (C, H, W), else mlp."""
    if kind not in ("auto", "conv", "mlp"):
        raise LLPInputError(f"generator kind must be auto, conv or mlp, got {kind!r}")
    image = pixels and len(input_shape) == 3
    if kind == "conv" or (kind == "auto" and image):
        if not image:
            raise LLPInputError(f"--gan-generator conv needs raw images (C, H, W), got inputs of shape "
                                f"{tuple(input_shape)}; use --gan-generator mlp or auto")
        return ConvGenerator(input_shape, z_dim)
    return MLPGenerator(input_shape, z_dim, width=500 if pixels else 128, pixels=pixels)


def sample_noise(n: int, z_dim: int, device) -> torch.Tensor:
    """:math:`z \\sim U[-1, 1]^{d_z}`, ``n`` rows (the torch generator of ``device``)."""
    return torch.rand(n, z_dim, device=device) * 2.0 - 1.0
