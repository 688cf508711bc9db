"""Hook specifications: the manual for zoocompat plugin authors.

zoocompat is a pluggy application (project name ``"zoocompat"``). A plugin is
any module or object that implements one or more of the hooks below, decorated
with :data:`zoocompat.hookimpl`, and is made known through the ``zoocompat``
entry-point group of its distribution::

    [project.entry-points.zoocompat]
    my_backend = "my_package.my_backend"

The built-in plugins in ``plugins/`` register through that same group; there is
no special path for them.

Every hook here is a *registration* hook: it is called once per session when
the plugin manager is built, and returns a list of objects that follow one of
the protocols in :mod:`zoocompat.api`. The manager flattens the lists of all
plugins and refuses two objects of the same kind with the same name.

Plugin modules are imported by ``zoocompat --help``, so they must not import an
ML framework at module level: import torch, tensorflow or onnxruntime inside
the methods that need them.

Hooks are grouped by the stage of a cell they feed:

* axes: :func:`zoocompat_precisions`, :func:`zoocompat_quant_modes` (backends
  and frontends are axes too, through the hooks that register them)
* models in: :func:`zoocompat_zoo_dirs`, :func:`zoocompat_datasets`,
  :func:`zoocompat_frontends`
* quantize: :func:`zoocompat_quantizers`
* run: :func:`zoocompat_backends`
* verdict: :func:`zoocompat_metrics`, :func:`zoocompat_known_failures`
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from zoocompat.api import Backend, Dataset, Frontend, Metric, Precision, Quantizer, QuantMode

__all__ = [
    "hookspec",
    "zoocompat_backends",
    "zoocompat_datasets",
    "zoocompat_frontends",
    "zoocompat_known_failures",
    "zoocompat_metrics",
    "zoocompat_precisions",
    "zoocompat_quant_modes",
    "zoocompat_quantizers",
    "zoocompat_zoo_dirs",
]

hookspec = pluggy.HookspecMarker("zoocompat")


# -------------------------------------------------------------------------
# Axes: the precisions and quantization modes cells are made of
# -------------------------------------------------------------------------


@hookspec
def zoocompat_precisions() -> list[Precision]:
    """Return the precisions backends and quantizers may name.

    The built-ins are ``fp32`` (order 10), ``fp16`` (20), ``w8a8`` (30),
    ``w8a16`` (40) and ``w4a8`` (50, opt-in: ``default=False``). A plugin
    that adds a precision (say ``w4a16``) registers it here, and lists it in
    the ``precisions`` of the backends and quantizers that run it. Card
    tolerance keys, smoke pairs, ``--precisions`` and known-failures entries
    are checked against the registered names.

    :return: a list of :class:`zoocompat.api.Precision` records; ``quantized``
        says whether its cells need a quantizer and a QDQ model, ``order``
        where it sorts (ascending, ties by name).

    Called once when the plugin manager is built.
    """


@hookspec
def zoocompat_quant_modes() -> list[QuantMode]:
    """Return the quantization modes cells may run with.

    The built-ins are ``none`` (order 10: the mode of every unquantized
    cell), ``ptq`` (20), ``qat`` (30) and ``auto`` (40); ``qat`` and
    ``auto`` are opt-in (``default=False``). A quantizer serves the modes it
    lists in ``modes``; the core gives ``none`` and ``qat`` (a card's
    ``qat_quantizer``) their meaning.

    :return: a list of :class:`zoocompat.api.QuantMode` records.

    Called once when the plugin manager is built.
    """


# -------------------------------------------------------------------------
# Models in: where cards are, what data they are scored on, how they load
# -------------------------------------------------------------------------


@hookspec
def zoocompat_zoo_dirs() -> list[Path]:
    """Return folders that hold model cards (``*.yaml``).

    Every YAML file directly inside a returned folder (not below it) is read
    as a model card and validated against :class:`zoocompat.model.cards.Card`.
    Folders given with the pytest option ``--zoo DIR`` are added after those
    of all plugins.

    :return: a list of existing folders; an empty list is fine.

    Called once when the zoo is first listed (``zoocompat zoo list``, matrix
    collection).
    """


@hookspec
def zoocompat_datasets() -> list[Dataset]:
    """Return the labeled datasets that cards may name in ``dataset.name``.

    A dataset yields deterministic labeled samples for a seed (see
    :class:`zoocompat.api.Dataset`). The core splits the pool into a
    calibration and an evaluation part that never overlap, and applies the
    card's preprocessing; a dataset does neither.

    :return: a list of :class:`zoocompat.api.Dataset` objects.

    Called once when the plugin manager is built.
    """


@hookspec
def zoocompat_frontends() -> list[Frontend]:
    """Return frontends: framework loaders that turn a card into canonical ONNX.

    The built-ins are ``pytorch``, ``tensorflow`` and ``onnx``; a frontend's
    optional ``order`` places its rows. A frontend loads the card's model with real weights, runs it in
    its own framework (the *native* FP32 reference) and exports an ONNX file
    with the card's static input dims (see :class:`zoocompat.api.Frontend`).

    :return: a list of :class:`zoocompat.api.Frontend` objects.

    Called once when the plugin manager is built.
    """


# -------------------------------------------------------------------------
# Quantize
# -------------------------------------------------------------------------


@hookspec
def zoocompat_quantizers() -> list[Quantizer]:
    """Return quantizers: calibrate an FP32 ONNX into a QDQ ONNX + encodings.

    A quantizer writes AIMET-format encodings JSON beside the QDQ ONNX; the
    encodings are the contract every backend runs (see
    :class:`zoocompat.api.Quantizer`).

    :return: a list of :class:`zoocompat.api.Quantizer` objects.

    Called once when the plugin manager is built.
    """


# -------------------------------------------------------------------------
# Run
# -------------------------------------------------------------------------


@hookspec
def zoocompat_backends() -> list[Backend]:
    """Return backends: runtimes that compile and run an ONNX file.

    The built-ins are ``cpu``, ``gpu``, ``dsp`` and ``htp``; a backend's
    optional ``order`` places its columns and cells, and exactly one backend
    declares ``reference = True`` (the built-in ``cpu``): it runs the FP32
    and QDQ references the others are measured against. A backend
    declares the precisions it runs (registered ones, see
    :func:`zoocompat_precisions`); the matrix generates only those pairs.
    A backend that cannot run on this machine says why through
    :meth:`zoocompat.api.Backend.available`, and its cells are recorded as
    ``skip`` with ``unavailable: <why>`` rather than silently dropped.

    :return: a list of :class:`zoocompat.api.Backend` objects.

    Called once when the plugin manager is built.
    """


# -------------------------------------------------------------------------
# Verdict
# -------------------------------------------------------------------------


@hookspec
def zoocompat_metrics() -> list[Metric]:
    """Return metrics that cards may name in ``metric.name``.

    A metric scores each evaluation sample on its own (see
    :class:`zoocompat.api.Metric`) so that FP32 and quantized runs can be
    compared sample by sample.

    :return: a list of :class:`zoocompat.api.Metric` objects.

    Called once when the plugin manager is built.
    """


@hookspec
def zoocompat_known_failures() -> list[Path]:
    """Return known-failures files (YAML) whose entries the matrix applies.

    Each file lists accepted failures as strict expected failures (format:
    :mod:`zoocompat.gate.known_failures`); the default zoo returns its
    ``known_failures.yaml``. The entries of all plugins' files apply in
    registration order, the first matching entry wins, and every pattern is
    checked against the registered axes and the discovered zoo. The pytest
    option ``--known-failures FILE`` replaces them all for a session.

    :return: a list of paths; a path that does not exist is skipped.

    Called once when the plugin manager is built.
    """
