"""Parameter shapes of the benchmark models."""

from __future__ import annotations

MLP_SHAPES: list[tuple[int, ...]] = [(64, 20), (64,), (32, 64), (32,), (1, 32), (1,)]
"""A small real model: a 20-64-32-1 perceptron, six tensors, 3,457 values."""


def resnet50_shapes() -> list[tuple[int, ...]]:
    """The parameter shapes of torchvision's ResNet-50: 161 tensors, 25,557,032 values."""
    shapes: list[tuple[int, ...]] = [(64, 3, 7, 7), (64,), (64,)]
    in_channels = 64
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for block in range(blocks):
            out_channels = width * 4
            shapes += [(width, in_channels, 1, 1), (width,), (width,)]
            shapes += [(width, width, 3, 3), (width,), (width,)]
            shapes += [(out_channels, width, 1, 1), (out_channels,), (out_channels,)]
            if block == 0:
                shapes += [(out_channels, in_channels, 1, 1), (out_channels,), (out_channels,)]
            in_channels = out_channels
    shapes += [(1000, 2048), (1000,)]
    return shapes
