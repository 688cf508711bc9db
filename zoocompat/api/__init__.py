"""The plugin author's whole surface: hook specifications, protocols, records and errors.

A third-party plugin imports from here and nowhere else in the core::

    import zoocompat
    from zoocompat.api import Backend, CellError, Placement, RunResult

The process-isolated runner any backend can use is :mod:`zoocompat.api.runner`;
the AIMET encodings format that quantizers write and backends read is
:mod:`zoocompat.api.encodings`; the content-addressed artifact cache is
:mod:`zoocompat.api.cache`. The plugin manager is :mod:`zoocompat.api.registry`.
"""

from zoocompat import hookimpl
from zoocompat.api.errors import CATEGORIES, CardError, CellError, PluginError, ZoocompatError
from zoocompat.api.protocols import (
    OPTIONAL_MEMBERS,
    Backend,
    Batch,
    CompiledModel,
    Dataset,
    Frontend,
    LabeledPool,
    Metric,
    Placement,
    Precision,
    Quantizer,
    QuantizeResult,
    QuantMode,
    RunResult,
    TrainingJob,
    missing_members,
    optional,
)

__all__ = [
    "CATEGORIES",
    "OPTIONAL_MEMBERS",
    "Backend",
    "Batch",
    "CardError",
    "CellError",
    "CompiledModel",
    "Dataset",
    "Frontend",
    "LabeledPool",
    "Metric",
    "Placement",
    "PluginError",
    "Precision",
    "QuantMode",
    "QuantizeResult",
    "Quantizer",
    "RunResult",
    "TrainingJob",
    "ZoocompatError",
    "hookimpl",
    "missing_members",
    "optional",
]
