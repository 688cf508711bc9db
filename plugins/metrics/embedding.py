"""Embedding metrics: retrieval among the evaluation samples themselves.

``recall_at_k``: each sample is a query against all the *other* samples of the
evaluation split; it scores 1.0 when one of its ``k`` nearest others by cosine
similarity has its identity label, else 0.0. The mean over queries is the
usual Recall@k. Labels are one identity per sample (``[N]``, integers or
strings); the output (``metric.output``, one output) holds one embedding per
sample (``[N, D]``, or any shape with the sample axis first, flattened)::

    metric:
      name: recall_at_k
      output: embedding
      params: {k: 1}   # default 1

Details, so that two runs compare sample by sample:

- ties count in the query's favour: it scores 1.0 when fewer than ``k`` samples of
  other identities are strictly more similar than its most similar same-identity sample;
- a query whose identity no other sample shares cannot be answered and scores 0.0
  (give every identity at least two samples);
- an all-zero embedding has cosine 0 with everything; an embedding with NaN or
  infinity scores 0.0 and is never anyone's neighbour.

A query's score depends on the other samples' embeddings too, so the split must
be the same between runs (the core evaluates the same samples). The cosine
similarity to the FP32 embedding of the same sample is fidelity's ``cosine``.

Only numpy is imported here.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from zoocompat_plugins.metrics.params import one_output, positive_k, require_labels

import zoocompat
from zoocompat.api.errors import CellError

__all__ = ["RecallAtK"]

#: queries compared at once (a block of ``_BLOCK x N`` similarities bounds the memory)
_BLOCK = 1024


class RecallAtK:
    """Recall@k by cosine similarity among the evaluation samples, one 0/1 score per query."""

    name = "recall_at_k"
    higher_is_better = True

    def __init__(self, k: int = 1) -> None:
        self.k = k

    def configure(self, params: dict[str, Any]) -> RecallAtK:
        """A copy with ``k`` from a card's ``metric.params`` (``{"k": int >= 1}``; default 1)."""
        unknown = sorted(set(params) - {"k"})
        if unknown:
            raise CellError(
                "bad_input",
                f"metric 'recall_at_k': unknown metric.params.{unknown[0]} (all unknown: {unknown}); "
                "allowed: ['k'] (neighbours looked at, default 1)",
            )
        configured = copy.copy(self)
        configured.k = positive_k(self.name, params, "nearest neighbours looked at")
        return configured

    def score(self, output: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """1.0 per query sample where one of its ``k`` most cosine-similar other samples shares its label."""
        one_output(self.name, output, "the embedding")
        require_labels(self.name, labels, "give one identity label per sample")
        output, labels = np.asarray(output), np.asarray(labels)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1 or output.ndim < 1 or len(output) != len(labels):
            raise CellError(
                "bad_input",
                f"metric 'recall_at_k': output of shape {list(output.shape)} and labels of shape "
                f"{list(labels.shape)} do not match; expected N embeddings and N identity labels (shape [N])",
            )
        count = len(labels)
        if count < 2:
            raise CellError("bad_input", "metric 'recall_at_k' needs at least two evaluation samples")
        vectors = output.astype(np.float64).reshape(count, -1)
        finite = np.isfinite(vectors).all(axis=1)
        vectors = np.where(finite[:, None], vectors, 0.0)
        norms = np.linalg.norm(vectors, axis=1)
        units = vectors / np.where(norms > 0.0, norms, 1.0)[:, None]
        scores = np.zeros(count)
        for start in range(0, count, _BLOCK):
            rows = np.arange(start, min(start + _BLOCK, count))
            similar = units[rows] @ units.T
            similar[:, ~finite] = -np.inf  # a broken embedding is nobody's neighbour
            similar[np.arange(len(rows)), rows] = -np.inf  # nor is the query itself
            same = (labels[rows][:, None] == labels[None, :]) & finite[None, :]
            same[np.arange(len(rows)), rows] = False
            has_match = same.any(axis=1)
            best_match = np.where(same, similar, -np.inf).max(axis=1)
            closer_others = np.sum(~same & (similar > best_match[:, None]), axis=1)
            scores[rows] = (has_match & finite[rows] & (closer_others < self.k)).astype(np.float64)
        return scores


@zoocompat.hookimpl
def zoocompat_metrics() -> list:
    """The embedding metrics of this module."""
    return [RecallAtK()]
