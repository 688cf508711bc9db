"""Classification metrics: one score per sample, so runs compare sample by sample."""

from __future__ import annotations

import numpy as np

import zoocompat
from zoocompat.errors import CellError


class Top1:
    """Top-1 accuracy: 1.0 where the highest score is the label's class, else 0.0."""

    name = "top1"
    higher_is_better = True

    def score(self, output: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Score each sample of ``output`` (``N x classes``; singleton axes between
        the sample and the class axis are allowed) against integer ``labels``.
        """
        if labels is None or np.size(labels) == 0:
            raise CellError(
                "bad_input",
                "metric 'top1': no labels were given; the card's dataset must yield one class index per sample",
            )
        output = np.asarray(output)
        labels = np.asarray(labels)
        if not np.issubdtype(labels.dtype, np.integer):
            raise CellError(
                "bad_input",
                f"metric 'top1': labels must be class indices, got dtype {labels.dtype}; "
                "use a classification dataset for this metric",
            )
        if output.ndim < 2 or labels.size != len(labels) or len(output) != len(labels):
            raise CellError(
                "bad_input",
                f"metric 'top1': output of shape {output.shape} and labels of shape {labels.shape} do not match; "
                "expected N x classes scores for N labels (check metric.output)",
            )
        predicted = np.argmax(output, axis=-1).reshape(len(output), -1)
        if predicted.shape[1] != 1:
            raise CellError(
                "bad_input",
                f"metric 'top1': output of shape {output.shape} holds {predicted.shape[1]} score vectors per "
                "sample, expected one; point metric.output at the class scores",
            )
        return (predicted[:, 0] == labels.reshape(-1)).astype(np.float64)


@zoocompat.hookimpl
def zoocompat_metrics() -> list[Top1]:
    """The classification metrics of this module."""
    return [Top1()]
