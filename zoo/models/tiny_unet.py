"""A tiny U-Net for 64x64 RGB scenes: 4-class segmentation logits, NCHW at the input's resolution.

The encoder starts with one 3x3 convolution at full resolution, then halves
the resolution once per further level with a stride-2 3x3 convolution
followed by a 3x3 convolution (64 -> 32 -> 16 -> 8 with the default widths).
The decoder doubles it back with a 2x2 stride-2 ``ConvTranspose`` to the
skip's width, adds the encoder's feature map of the same resolution (the skip
connection) and applies a 3x3 convolution; a 1x1 convolution gives the logits.

Every 3x3 convolution is followed by a BatchNorm while training (it makes the
few-step CPU training converge); :meth:`TinyUNet.fused` folds each BatchNorm
into its convolution, so the exported graph holds only ``Conv``,
``ConvTranspose``, ``Relu`` and ``Add``: ops the QNN HTP runs, and nothing for
QAT to fold.

Upsampling is a ``ConvTranspose`` rather than a nearest ``Upsample`` (ONNX
``Resize``) because of QAT: aimet-torch quantizes a TorchScript model through
its ONNX converted back by onnx2torch, and torch.fx cannot trace onnx2torch's
nearest ``Resize`` (its output size is computed from the input's shape), after
which QuantSim refuses the unprepared onnx2torch modules. ``ConvTranspose``
comes back as a plain ``nn.ConvTranspose2d``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

IN_CHANNELS = 3
NUM_CLASSES = 4
IMAGE_SIZE = 64
#: Channels per resolution level, full resolution first (64, 32, 16, 8 pixels).
WIDTHS = (16, 32, 64, 128)


class _ConvBlock(nn.Module):
    """A 3x3 convolution (padding 1), a BatchNorm (until :meth:`fuse`), and a ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.norm: nn.Module = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()

    def fuse(self) -> None:
        """Fold the (eval-mode) BatchNorm into the convolution."""
        if isinstance(self.norm, nn.BatchNorm2d):
            self.conv = fuse_conv_bn_eval(self.conv, self.norm)
            self.norm = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve, normalise, rectify."""
        return self.relu(self.norm(self.conv(x)))


class _Down(nn.Sequential):
    """Half the resolution: a stride-2 block, then a stride-1 block."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(_ConvBlock(cin, cout, stride=2), _ConvBlock(cout, cout))


class _Up(nn.Module):
    """A 2x2 stride-2 transposed convolution to the skip's width and resolution, the skip added, then a 3x3 block."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2)
        self.merge = _ConvBlock(cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Decode ``x`` to the resolution of ``skip`` and merge them."""
        return self.merge(self.up(x) + skip)


class TinyUNet(nn.Module):
    """A U-Net with one level per entry of ``widths`` (its channels; full resolution first); 4 logits a pixel."""

    def __init__(self, widths: tuple[int, ...] = WIDTHS) -> None:
        super().__init__()
        if len(widths) < 2:
            raise ValueError(f"TinyUNet needs at least two levels, got widths {widths}")
        self.stem = _ConvBlock(IN_CHANNELS, widths[0])
        self.down = nn.ModuleList(_Down(a, b) for a, b in zip(widths, widths[1:], strict=False))
        self.up = nn.ModuleList(_Up(b, a) for a, b in zip(widths, widths[1:], strict=False))
        self.head = nn.Conv2d(widths[0], NUM_CLASSES, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 3, 64, 64]`` normalised images -> ``[N, 4, 64, 64]`` class logits."""
        return self.forward_with_bottleneck(x)[0]

    def forward_with_bottleneck(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The class logits and the deepest encoder features (``[N, widths[-1], 64 / 2**levels, ...]``), which a
        training recipe may supervise directly (deep supervision).
        """
        skips = [self.stem(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        bottleneck = y = skips.pop()
        for up in reversed(self.up):
            y = up(y, skips.pop())
        return self.head(y), bottleneck

    def fused(self) -> TinyUNet:
        """An eval-mode copy with every BatchNorm folded into its convolution (the same outputs)."""
        model = copy.deepcopy(self).eval()
        for module in model.modules():
            if isinstance(module, _ConvBlock):
                module.fuse()
        return model


def tiny_unet() -> TinyUNet:
    """A :class:`TinyUNet` with the default :data:`WIDTHS` and random weights."""
    return TinyUNet()
