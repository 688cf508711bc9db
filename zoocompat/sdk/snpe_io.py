"""Raw-file I/O of the vendor net-run tools (``snpe-net-run``, ``qnn-net-run``).

Both tools read their inputs from an input list of ``.raw`` files and write
their outputs as ``.raw`` files:

* inputs: each sample's tensor as float32, little-endian, C order, batch dim 1;
  the list has one line per sample, a bare path for a single-input model and
  space-separated ``name:=path`` pairs otherwise (the format of
  :mod:`zoocompat.model.input_list`, which reads such lists back);
* outputs: ``<output_dir>/Result_<N>/<output name>.raw`` for sample ``N``, float32
  little-endian (the tools dequantize integer outputs unless told to keep native
  types). An output whose name holds ``/`` is written into sub-folders; QNN also
  replaces characters that are not letters, digits or ``_`` in tensor names, so a
  name is looked up as given first, then in that sanitized form.

:func:`write_inputs` splits a batch (sample axis first) into such files and
:func:`read_outputs` stacks the ``Result_N`` files back into a batch with the
model's output shapes. Only numpy is imported here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from zoocompat.api.errors import CellError
from zoocompat.api.samples import collect

__all__ = ["RAW_DTYPE", "read_outputs", "result_dirs", "sanitized", "write_inputs"]

RAW_DTYPE = np.dtype("<f4")
_RESULT = re.compile(r"^Result_(\d+)$")


def sanitized(name: str) -> str:
    """A tensor name as QNN writes it into file names: every character outside ``[A-Za-z0-9_]`` -> ``_``,
    and a leading ``_`` when it starts with a digit.
    """
    safe = re.sub(r"\W", "_", name)
    return f"_{safe}" if safe[:1].isdigit() else safe


def write_inputs(batch: Mapping[str, np.ndarray], folder: Path, list_prefix: str | None = None) -> Path:
    """Write each sample of ``batch`` (sample axis first) as float32 little-endian ``.raw`` files
    into ``folder`` and the input list ``folder/input_list.txt`` naming them; return the list's path.

    Each sample keeps a leading batch dim of 1. Paths in the list are absolute
    when ``list_prefix`` is ``None``, else ``list_prefix + file name`` (for a
    list read on a device, relative to the folder the tool runs in).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = list(batch)
    if not names:
        raise ValueError("write_inputs: the batch has no inputs")
    counts = {len(array) for array in batch.values()}
    if len(counts) != 1:
        raise ValueError(f"write_inputs: inputs have different sample counts {sorted(counts)}")
    lines = []
    for index in range(counts.pop()):
        parts = []
        for name in names:
            file = f"{index:05d}_{sanitized(name)}.raw" if len(names) > 1 else f"{index:05d}.raw"
            sample = np.ascontiguousarray(batch[name][index : index + 1], dtype=RAW_DTYPE)
            sample.tofile(folder / file)
            path = str(folder.resolve() / file) if list_prefix is None else f"{list_prefix}{file}"
            parts.append(path if len(names) == 1 else f"{name}:={path}")
        lines.append(" ".join(parts))
    path = folder / "input_list.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def result_dirs(output_dir: Path) -> list[Path]:
    """The ``Result_N`` folders under ``output_dir``, ordered by ``N``."""
    found = [(int(m.group(1)), p) for p in Path(output_dir).iterdir() if p.is_dir() and (m := _RESULT.match(p.name))]
    return [path for _, path in sorted(found)]


def _output_file(result: Path, name: str) -> Path | None:
    for candidate in (name, sanitized(name), name.replace(":", "_")):
        path = result / f"{candidate}.raw"
        if path.is_file():
            return path
    return None


def read_outputs(output_dir: Path, shapes: Mapping[str, Sequence[int]], samples: int) -> dict[str, np.ndarray]:
    """Read ``Result_0 .. Result_<samples-1>`` under ``output_dir`` into ``{output name: array}``.

    ``shapes`` maps each output name to its per-sample shape (batch dim 1
    included, when the output has one); the arrays come back with the sample
    axis first, as float32 (:func:`zoocompat.api.samples.collect`: concatenated
    along a batch dim of 1, else stacked on a new axis). A missing ``Result_N``
    folder or file, or a file whose size is not that of the shape, raises
    ``CellError("crash")`` naming it: the tool ran but did not write what the
    model says it produces.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise CellError("crash", f"the net-run tool wrote no output folder {output_dir}")
    results = {int(m.group(1)): p for p in result_dirs(output_dir) if (m := _RESULT.match(p.name))}
    missing = [n for n in range(samples) if n not in results]
    if missing:
        raise CellError(
            "crash",
            f"{output_dir}: no Result_N folder for samples {missing[:5]}{' ...' if len(missing) > 5 else ''} "
            f"of {samples} (found {len(results)})",
        )
    calls: list[list[np.ndarray]] = []
    for n in range(samples):
        call = []
        for name, shape in shapes.items():
            path = _output_file(results[n], name)
            if path is None:
                present = sorted(p.name for p in results[n].rglob("*.raw"))
                raise CellError("crash", f"{results[n]}: no {name}.raw (nor {sanitized(name)}.raw); found {present}")
            expected = math.prod(shape) * RAW_DTYPE.itemsize
            if path.stat().st_size != expected:
                raise CellError(
                    "crash",
                    f"{path}: {path.stat().st_size} bytes, expected {expected} "
                    f"(float32 little-endian, shape {list(shape)})",
                )
            call.append(np.fromfile(path, dtype=RAW_DTYPE).astype(np.float32).reshape(shape))
        calls.append(call)
    return dict(zip(shapes, collect(calls), strict=True))
