"""SNPE-style input lists: calibration or evaluation samples as ``.raw`` files named in a text file.

The format the SNPE / QNN tools read with ``--input_list``:

* one sample per line;
* a single-input model: the line is the path of one ``.raw`` file;
* a multi-input model: the line is space-separated ``name:=path`` pairs, one per input;
* a line starting with ``#`` (SNPE puts the output names there: ``#out1 out2``) and a
  blank line are skipped;
* each ``.raw`` file holds one sample's tensor as float32, little-endian, C order,
  exactly ``prod(shape) * 4`` bytes for the input's shape (batch dim 1 included).

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

__all__ = ["RAW_DTYPE", "read_input_list", "write_input_list"]

RAW_DTYPE = np.dtype("<f4")
_PAIR = re.compile(r"^([^\s:]+):=(\S+)$")


def write_input_list(
    samples: Sequence[Mapping[str, np.ndarray]], folder: Path, list_name: str = "input_list.txt"
) -> Path:
    """Write each sample's tensors as ``.raw`` files into ``folder`` and the list naming them.

    ``samples`` holds one dict per sample (input name -> array, batch dim 1).
    A single-input model gets bare paths, a multi-input one ``name:=path``
    pairs. Paths in the list are relative to ``folder``. Returns the list's path.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, sample in enumerate(samples):
        parts = []
        for name, array in sample.items():
            safe = re.sub(r"[^\w.-]", "_", name)
            raw = f"{index:05d}_{safe}.raw" if len(sample) > 1 else f"{index:05d}.raw"
            np.ascontiguousarray(array, dtype=RAW_DTYPE).tofile(folder / raw)
            parts.append(raw if len(sample) == 1 else f"{name}:={raw}")
        lines.append(" ".join(parts))
    path = folder / list_name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _read_raw(path: Path, shape: Sequence[int], where: str) -> np.ndarray:
    expected = math.prod(shape) * RAW_DTYPE.itemsize
    if not path.is_file():
        raise CellError("bad_input", f"{where}: file {path} does not exist")
    actual = path.stat().st_size
    if actual != expected:
        raise CellError(
            "bad_input",
            f"{where}: file {path} has {actual} bytes, expected {expected} "
            f"(float32 little-endian, shape {list(shape)}); "
            + (
                f"it holds {actual // RAW_DTYPE.itemsize} floats"
                if actual % RAW_DTYPE.itemsize == 0
                else "its size is not a whole number of float32 values"
            ),
        )
    return np.fromfile(path, dtype=RAW_DTYPE).astype(np.float32).reshape(shape)


def read_input_list(path: Path, inputs: Mapping[str, Sequence[int]]) -> list[dict[str, np.ndarray]]:
    """Read an input list into one ``{input name: float32 array of its shape}`` dict per sample.

    ``inputs`` maps each model input name to its static shape (batch dim 1
    included), in the model's input order. Raises ``CellError("bad_input")``
    naming the list, the line and the file for a missing file, a wrong size
    (expected vs actual bytes), an unknown or missing input name, or an empty list.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CellError("bad_input", f"cannot read input list {path}: {exc}") from exc
    names = list(inputs)
    samples: list[dict[str, np.ndarray]] = []
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
            file = file if file.is_absolute() else path.parent / file
            sample[name] = _read_raw(file, inputs[name], f"{where} (input {name!r})")
        samples.append(sample)
    if not samples:
        raise CellError("bad_input", f"input list {path} names no samples (only blank or '#' lines)")
    return samples
