"""The built-in precisions and quantization modes: the values of two of the matrix's axes.

Registered through the ``zoocompat`` entry point ``axes_default`` like any other
plugin; a third-party plugin adds a precision (say ``w4a16``) or a mode the same way.
"""

from __future__ import annotations

import zoocompat
from zoocompat.api import Precision, QuantMode


@zoocompat.hookimpl
def zoocompat_precisions() -> list[Precision]:
    """``fp32``, ``fp16`` (float: the FP32 ONNX as it is) and the integer ``w8a8``, ``w8a16``, ``w4a8``."""
    return [
        Precision("fp32", quantized=False, order=10, description="32-bit float: the reference precision"),
        Precision("fp16", quantized=False, order=20, description="16-bit float, cast by the backend"),
        Precision("w8a8", quantized=True, order=30, description="8-bit weights, 8-bit activations (QDQ)"),
        Precision("w8a16", quantized=True, order=40, description="8-bit weights, 16-bit activations (QDQ)"),
        Precision(
            "w4a8",
            quantized=True,
            order=50,
            description="4-bit weights, 8-bit activations (QDQ); opt-in: the quantization study, not the gate",
            default=False,
        ),
    ]


@zoocompat.hookimpl
def zoocompat_quant_modes() -> list[QuantMode]:
    """``none`` (unquantized cells), ``ptq``, and the opt-in ``qat`` and ``auto``."""
    return [
        QuantMode("none", order=10, description="no quantization: the float precisions' cells"),
        QuantMode("ptq", order=20, description="post-training quantization with the card's quantizer"),
        QuantMode("qat", order=30, description="quantization-aware training (the card's qat_quantizer)", default=False),
        QuantMode("auto", order=40, description="the AutoQuant ladder's choice at the allowed drop", default=False),
    ]
