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


# --- the memory a process that runs cells may take ----------------------------------------------------------------

#: Environment variable with the default of ``--worker-memory-gb``.
WORKER_MEMORY_ENV = "ZOOCOMPAT_WORKER_MEMORY_GB"
#: Share of the machine's memory a worker may take by default.
DEFAULT_MEMORY_SHARE = 0.75
_GIB = 1 << 30


def physical_memory_gb() -> float:
    """The machine's memory in GiB."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / _GIB


def default_worker_memory_gb() -> float:
    """``$ZOOCOMPAT_WORKER_MEMORY_GB``, else 75% of the machine's memory."""
    given = os.environ.get(WORKER_MEMORY_ENV)
    return float(given) if given else round(DEFAULT_MEMORY_SHARE * physical_memory_gb(), 1)


def limit_memory(gb: float) -> float | None:
    """Cap this process's address space (``RLIMIT_AS``, inherited by the runner processes it starts) at ``gb``
    GiB, so a runaway allocation raises ``MemoryError`` in the cell that made it instead of taking the machine;
    ``0`` leaves it unlimited. Returns the limit set, in GiB.
    """
    import resource

    if gb <= 0:
        return None
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = int(gb * _GIB) if hard == resource.RLIM_INFINITY else min(int(gb * _GIB), hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    return limit / _GIB


def memory_limit_text() -> str:
    """The memory limit of the current process in words, for a record's reason."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return "no address-space limit is set, so the machine ran out"
    return f"a limit of {soft / _GIB:.1f} GiB of address space, --worker-memory-gb"
