"""Convolutional networks for images: conv-large (the paper's 13-layer backbone), WRN-28-2 (LLP-VAT's
backbone) and a small CNN for CPU work. Inputs are (N, C, H, W) float tensors; see :class:`Normalized`
for raw uint8 pixels."""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn(cin, cout, k, padding):
    return [nn.Conv2d(cin, cout, k, padding=padding, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.1)]


class ConvLarge(nn.Module):
    """The 13-layer "conv-large" of VAT / Mean Teacher (SPEC section 5; paper section 5.2):
    3x[3x3 conv 128] - maxpool 2 - dropout 0.5 - 3x[3x3 conv 256] - maxpool 2 - dropout 0.5 -
    3x3 conv 512 (no padding) - 1x1 conv 256 - 1x1 conv 128 - global average pool - linear;
    every conv is followed by BatchNorm and leaky ReLU (slope 0.1)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, dropout: float = 0.5):
        super().__init__()
        layers = []
        for i in range(3):
            layers += _conv_bn(in_channels if i == 0 else 128, 128, 3, 1)
        layers += [nn.MaxPool2d(2), nn.Dropout(dropout)]
        for i in range(3):
            layers += _conv_bn(128 if i == 0 else 256, 256, 3, 1)
        layers += [nn.MaxPool2d(2), nn.Dropout(dropout)]
        layers += _conv_bn(256, 512, 3, 0) + _conv_bn(512, 256, 1, 0) + _conv_bn(256, 128, 1, 0)
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))


class _WideBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.act = nn.LeakyReLU(0.1)
        self.shortcut = None if cin == cout and stride == 1 else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        o = self.act(self.bn1(x))
        y = self.conv2(self.act(self.bn2(self.conv1(o))))
        return y + (x if self.shortcut is None else self.shortcut(o))


class WideResNet(nn.Module):
    """Wide ResNet (Zagoruyko and Komodakis, 2016) as in the semi-supervised / LLP-VAT code:
    depth 28, widen factor 2 by default (WRN-28-2), pre-activation blocks with leaky ReLU 0.1."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, depth: int = 28, widen: int = 2):
        super().__init__()
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        blocks = []
        for g, stride in enumerate((1, 2, 2)):
            for i in range(n):
                blocks.append(_WideBlock(widths[g] if i == 0 else widths[g + 1], widths[g + 1], stride if i == 0 else 1))
        self.blocks = nn.Sequential(*blocks)
        self.bn, self.act = nn.BatchNorm2d(widths[3]), nn.LeakyReLU(0.1)
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")

    def features(self, x):
        """The pooled penultimate representation (what the last linear layer sees)."""
        x = self.act(self.bn(self.blocks(self.conv(x))))
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x):
        return self.fc(self.features(x))


class SmallCNN(nn.Module):
    """A small, fast CNN for CPU runs: [conv 32, conv 32, pool] [conv 64, conv 64, pool] conv 128, GAP, linear."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn(in_channels, 32, 3, 1), *_conv_bn(32, 32, 3, 1), nn.MaxPool2d(2),
            *_conv_bn(32, 64, 3, 1), *_conv_bn(64, 64, 3, 1), nn.MaxPool2d(2),
            *_conv_bn(64, 128, 3, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))


class Normalized(nn.Module):
    """Wraps a network for raw pixel inputs: ``net((x / 255 - mean) / std)`` with per-channel
    ``mean`` and ``std`` (in [0, 1] units), stored as buffers so they travel with the weights.
    Inputs may be uint8 or float in pixel units [0, 255]; on CUDA the result is channels-last."""

    def __init__(self, net: nn.Module, mean, std):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def normalize(self, x):
        """Pixels (uint8 or float in [0, 255]) to the normalised inputs the wrapped network sees."""
        x = (x.float() / 255.0 - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x

    def forward(self, x):
        return self.net(self.normalize(x))

    def features(self, x):
        """The wrapped network's penultimate features (see :func:`plotllp.models.features`)."""
        return features(self.net, self.normalize(x))


class Standardized(nn.Module):
    """Wraps a network for feature tables: ``net((x - mean) / std)`` per column, with ``mean`` and
    ``std`` stored as buffers so that they travel with the weights (``plotllp predict`` reuses them)."""

    def __init__(self, net: nn.Module, mean, std):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1))

    def normalize(self, x):
        return (x.float() - self.mean) / self.std

    def forward(self, x):
        return self.net(self.normalize(x))

    def features(self, x):
        return features(self.net, self.normalize(x))


def features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The representation a network's last layer sees: ``model.features(x)`` where it has one
    (every network here does), else its logits. LLP-GAN's feature matching uses it."""
    f = getattr(model, "features", None)
    return f(x) if callable(f) else model(x)
