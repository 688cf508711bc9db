"""How a batch of samples meets a model that runs one sample per call.

A batch is a ``dict`` from input name to an array whose first axis is the
sample axis. A model input of rank ``r`` whose first dim is 1 (the batch dim)
takes ``array[i : i + 1]`` (the batch array has rank ``r``: samples are stacked
along the batch dim); any other input (a scalar, a state tensor ``[2, 1, 128]``)
takes ``array[i]`` (the batch array has rank ``r + 1``: one whole tensor per
sample). Outputs go back the same way: a per-call output whose first dim is 1
is concatenated along it, any other is stacked on a new sample axis.

Only numpy is used. The runner scripts that import nothing of the suite
(``ort_runner.py``, the repro folder's ``run_repro.py``) carry the same two
rules in a few lines of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

__all__ = ["collect", "count", "run_batched", "sample", "session_ranks"]


def count(batch: Mapping[str, np.ndarray]) -> int:
    """The number of samples in ``batch`` (0 for an empty batch)."""
    return len(next(iter(batch.values()))) if batch else 0


def sample(batch: Mapping[str, np.ndarray], index: int, ranks: Mapping[str, int]) -> dict[str, np.ndarray]:
    """Sample ``index`` of ``batch`` as one model call's feed; ``ranks`` maps each input name to the model
    input's rank (inputs the model does not take are left out).
    """
    feed = {}
    for name, array in batch.items():
        if name not in ranks:
            continue
        feed[name] = array[index : index + 1] if array.ndim == ranks[name] else array[index, ...]  # an array, even 0-d
    return feed


def collect(calls: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
    """Per-call outputs (one list of outputs per call) as one array per output with the sample axis first."""
    if not calls:
        return []
    merged = []
    for values in zip(*calls, strict=True):
        if all(np.ndim(v) >= 1 and np.shape(v)[0] == 1 for v in values):
            merged.append(np.concatenate(values))
        else:
            merged.append(np.stack(values))
    return merged


def session_ranks(session) -> dict[str, int]:
    """``{input name: rank}`` of an onnxruntime session's inputs."""
    return {i.name: len(i.shape) for i in session.get_inputs()}


def run_batched(
    batch: Mapping[str, np.ndarray],
    ranks: Mapping[str, int],
    call: Callable[[dict[str, np.ndarray]], Sequence[np.ndarray]],
    chunk: int = 1,
) -> list[np.ndarray]:
    """Run ``call`` (one feed -> its outputs) over every sample of ``batch``; the outputs with the sample axis
    first (:func:`collect`).

    When every input is batched (its array has the model input's rank), samples go ``chunk`` at a time
    along the batch dim (a native framework whose model takes any batch size); otherwise one at a time.
    """
    total = count(batch)
    if chunk > 1 and all(batch[name].ndim == rank for name, rank in ranks.items() if name in batch):
        calls = [call({k: v[start : start + chunk] for k, v in batch.items()}) for start in range(0, total, chunk)]
        return [np.concatenate(values) for values in zip(*calls, strict=True)] if calls else []
    return collect([call(sample(batch, i, ranks)) for i in range(total)])
