"""The environment a run happens in: the installed versions of the stack, and the host.

Both go into the results record's ``run`` section; the tool versions also go
into the artifact cache's keys (a conversion or a trained recipe made with
another torch, TensorFlow or onnx is not reused). Read from package metadata
and the standard library: nothing here imports an ML framework.
"""

from __future__ import annotations

import os
import platform
import socket
from functools import cache
from typing import Any

from zoocompat.api.registry import distribution_version

__all__ = ["TOOL_DISTRIBUTIONS", "host_info", "tool_versions"]

#: The distributions whose versions a run records and the cache keys depend on.
TOOL_DISTRIBUTIONS = (
    "torch",
    "torchvision",
    "tensorflow",
    "tf2onnx",
    "onnx",
    "onnxruntime",
    "onnxruntime-qnn",
    "aimet-torch",
    "aimet-onnx",
    "zoocompat",
)


def tool_versions() -> dict[str, str | None]:
    """Installed versions of the stack, read from package metadata (imports nothing); read once per process."""
    return dict(_tool_versions())


@cache
def _tool_versions() -> tuple[tuple[str, str | None], ...]:
    return tuple((name, distribution_version(name)) for name in TOOL_DISTRIBUTIONS)


def host_info() -> dict[str, Any]:
    """The machine a run happened on."""
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
