"""KeypointNet: a small CNN that regresses the four corners of the ``shape_keypoints`` quadrilateral.

Four stages take a ``1 x 64 x 64`` grey image down to ``128 x 4 x 4``; each is a
Conv(3x3, stride 2) + BatchNorm + ReLU, then a Conv(3x3) + BatchNorm + ReLU at
the same size. A global average pool and one Linear give 8 values: the corners'
``(x0, y0, x1, y1, x2, y2, x3, y3)`` as fractions of the image side (times 64
for pixels). Every op exports to plain ONNX with static shapes (Conv, Relu,
GlobalAveragePool, Flatten, Gemm; BatchNorm folds into the convs).
"""

from __future__ import annotations

from torch import Tensor, nn

#: Output channels of the four stages (64 -> 32 -> 16 -> 8 -> 4 pixels).
WIDTHS = (16, 32, 64, 128)
#: Corners regressed, (x, y) each.
KEYPOINTS = 4


def _conv_bn_relu(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class KeypointNet(nn.Module):
    """``N x 1 x 64 x 64`` normalised images -> ``N x 8`` corner coordinates, fractions of the image side."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for width in WIDTHS:
            layers += _conv_bn_relu(cin, width, 2) + _conv_bn_relu(width, width, 1)
            cin = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(cin, 2 * KEYPOINTS)

    def forward(self, x: Tensor) -> Tensor:
        """Corner ``(x, y)`` pairs, flattened: ``[N, 8]``."""
        return self.head(self.pool(self.features(x)).flatten(1))
