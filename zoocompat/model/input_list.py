"""SNPE-style input lists: calibration or evaluation samples as ``.raw`` files named in a text file.

The format the SNPE / QNN tools read with ``--input_list``:

* one sample per line;
* a single-input model: the line is the path of one ``.raw`` file;
* a multi-input model: the line is space-separated ``name:=path`` pairs, one per input;
* a line starting with ``#`` (SNPE puts the output names there: ``#out1 out2``) and a
  blank line are skipped;
* each ``.raw`` file holds one sample's tensor in the input's dtype (float32 unless
  told otherwise: ``dtypes``), little-endian, C order, exactly
  ``prod(shape) * itemsize`` bytes for the input's shape (batch dim 1 included);
  a bool is one byte, 0 or 1.

Relative paths resolve against the list file's folder (absolute paths are kept), so
a list and its ``.raw`` files can be moved together.

Only numpy is imported here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from zoocompat.api.errors import CellError

__all__ = ["RAW_DTYPE", "input_list_files", "raw_dtype", "read_input_list", "write_input_list"]

RAW_DTYPE = np.dtype("<f4")
_PAIR = re.compile(r"^([^\s:]+):=(\S+)$")

#: What a ``dtypes`` mapping may give per input: a numpy dtype or its name (``"float32"``, ``"int64"``, ``"bool"``).
DTypeLike = str | np.dtype | type


def raw_dtype(dtype: DTypeLike | None = None) -> np.dtype:
    """The on-disk dtype of a ``.raw`` file for an input of ``dtype`` (default float32): little-endian;
    a bool is stored as one unsigned byte (0 or 1).
    """
    native = np.dtype(np.float32 if dtype is None else dtype)
    if native.kind == "b":
        return np.dtype("u1")
    return native.newbyteorder("<") if native.itemsize > 1 else native


def _dtype_of(dtypes: Mapping[str, DTypeLike] | None, name: str) -> np.dtype:
    return np.dtype(np.float32 if dtypes is None or dtypes.get(name) is None else dtypes[name])


def write_input_list(
    samples: Sequence[Mapping[str, np.ndarray]],
    folder: Path,
    list_name: str = "input_list.txt",
    dtypes: Mapping[str, DTypeLike] | None = None,
) -> Path:
    """Write each sample's tensors as ``.raw`` files into ``folder`` and the list naming them.

    ``samples`` holds one dict per sample (input name -> array, batch dim 1).
    Each tensor is written as float32, or as ``dtypes[name]`` when given
    (little-endian; a bool as one byte). A single-input model gets bare paths,
    a multi-input one ``name:=path`` pairs. Paths in the list are relative to
    ``folder``. Returns the list's path.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, sample in enumerate(samples):
        parts = []
        for name, array in sample.items():
            safe = re.sub(r"[^\w.-]", "_", name)
            raw = f"{index:05d}_{safe}.raw" if len(sample) > 1 else f"{index:05d}.raw"
            values = np.asarray(array).astype(_dtype_of(dtypes, name), copy=False)
            np.ascontiguousarray(values, dtype=raw_dtype(values.dtype)).tofile(folder / raw)
            parts.append(raw if len(sample) == 1 else f"{name}:={raw}")
        lines.append(" ".join(parts))
    path = folder / list_name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _read_raw(path: Path, shape: Sequence[int], dtype: np.dtype, where: str) -> np.ndarray:
    stored = raw_dtype(dtype)
    expected = math.prod(shape) * stored.itemsize
    if not path.is_file():
        raise CellError("bad_input", f"{where}: file {path} does not exist")
    actual = path.stat().st_size
    if actual != expected:
        raise CellError(
            "bad_input",
            f"{where}: file {path} has {actual} bytes, expected {expected} "
            f"({dtype.name} little-endian, shape {list(shape)}); "
            + (
                f"it holds {actual // stored.itemsize} {dtype.name} values"
                if actual % stored.itemsize == 0
                else f"its size is not a whole number of {dtype.name} values"
            ),
        )
    values = np.fromfile(path, dtype=stored)
    if dtype.kind == "b":
        bad = np.flatnonzero(values > 1)
        if bad.size:
            raise CellError(
                "bad_input",
                f"{where}: file {path} holds byte {int(values[bad[0]])} at element {int(bad[0])}; "
                "a bool input's .raw file holds one byte per value, 0 or 1",
            )
    return values.astype(dtype).reshape(shape)


def input_list_files(path: Path, names: Sequence[str]) -> list[tuple[str, dict[str, Path]]]:
    """The ``.raw`` files an input list names: one ``(where, {input name: path})`` per sample, ``where``
    being ``list:line``. Relative paths are resolved against the list's folder.

    Raises ``CellError("bad_input")`` for an unreadable list, a line that does
    not fit ``names`` (unknown or missing input names) and an empty list.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CellError("bad_input", f"cannot read input list {path}: {exc}") from exc
    names = list(names)
    found: list[tuple[str, dict[str, Path]]] = []
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{number}"
        tokens = line.split()
        pairs = [_PAIR.match(token) for token in tokens]
        if all(pairs):
            files = {m.group(1): m.group(2) for m in pairs if m}
            unknown = sorted(set(files) - set(names))
            missing = [n for n in names if n not in files]
            if unknown or missing or len(files) != len(tokens):
                raise CellError(
                    "bad_input",
                    f"{where}: the line names inputs {[m.group(1) for m in pairs if m]}, the model has {names}"
                    + (f" (unknown: {unknown})" if unknown else "")
                    + (f" (missing: {missing})" if missing else ""),
                )
        elif len(tokens) == 1 and len(names) == 1 and not any(pairs):
            files = {names[0]: tokens[0]}
        else:
            raise CellError(
                "bad_input",
                f"{where}: expected "
                + ("one .raw path" if len(names) == 1 else f"{len(names)} 'name:=path' pairs for inputs {names}")
                + f", got {line!r}",
            )
        sample = {}
        for name in names:
            file = Path(files[name])
            sample[name] = file if file.is_absolute() else path.parent / file
        found.append((where, sample))
    if not found:
        raise CellError("bad_input", f"input list {path} names no samples (only blank or '#' lines)")
    return found


def read_input_list(
    path: Path,
    inputs: Mapping[str, Sequence[int]],
    dtypes: Mapping[str, DTypeLike] | None = None,
    within: Path | None = None,
) -> list[dict[str, np.ndarray]]:
    """Read an input list into one ``{input name: array of its shape}`` dict per sample.

    ``inputs`` maps each model input name to its static shape (batch dim 1
    included), in the model's input order; ``dtypes`` maps an input name to the
    dtype its ``.raw`` files hold (little-endian; default float32), which is
    also the dtype it is returned in. With ``within``, every ``.raw`` file
    must resolve (symlinks too) inside that folder. Raises
    ``CellError("bad_input")`` naming the list, the line and the file for a
    missing file, a wrong size (expected vs actual bytes), a bool byte other
    than 0 / 1, a file outside ``within``, an unknown or missing input name,
    or an empty list.
    """
    root = Path(within).resolve() if within is not None else None
    samples: list[dict[str, np.ndarray]] = []
    for where, files in input_list_files(path, list(inputs)):
        sample = {}
        for name, file in files.items():
            if root is not None and not file.resolve().is_relative_to(root):
                raise CellError(
                    "bad_input",
                    f"{where} (input {name!r}): file {file} resolves to {file.resolve()}, outside {root}; "
                    "keep the .raw files inside that folder",
                )
            sample[name] = _read_raw(file, inputs[name], _dtype_of(dtypes, name), f"{where} (input {name!r})")
        samples.append(sample)
    return samples
