"""Classification metrics: one score per sample, so runs compare sample by sample."""

from __future__ import annotations

import numpy as np

import zoocompat
from zoocompat.api.errors import CellError


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


def _binary_inputs(name: str, output: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(positive-class score per sample, 0/1 labels)`` from a binary classifier's output.

    The output is ``N`` or ``N x 1`` scores for the positive class, or ``N x 2``
    class scores (softmax or logits; the positive class is index 1).
    """
    output, labels = np.asarray(output, dtype=np.float64), np.asarray(labels)
    if labels.size == 0 or not np.issubdtype(labels.dtype, np.integer) or not np.isin(labels, (0, 1)).all():
        raise CellError(
            "bad_input",
            f"metric {name!r}: labels must be 0/1 per sample, got dtype {labels.dtype} values "
            f"{np.unique(labels)[:5] if labels.size else '[]'}; use a two-class dataset",
        )
    flat = output.reshape(len(output), -1) if output.ndim else output
    if len(flat) != len(labels) or flat.shape[1] not in (1, 2):
        raise CellError(
            "bad_input",
            f"metric {name!r}: output of shape {output.shape} for {len(labels)} labels; expected N, N x 1 "
            "positive-class scores or N x 2 class scores (check metric.output)",
        )
    positive = flat[:, 0] if flat.shape[1] == 1 else flat[:, 1] - flat[:, 0]  # a margin ranks like the softmax
    return positive, labels.reshape(-1)


class BinaryAccuracy:
    """Binary accuracy: 1.0 where the positive-class decision matches the 0/1 label.

    ``N x 2`` outputs decide by the larger score; ``N``/``N x 1`` scores decide at 0.5.
    """

    name = "binary_accuracy"
    higher_is_better = True

    def score(self, output: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Per-sample 0/1 correctness."""
        positive, truth = _binary_inputs(self.name, output, labels)
        two_class = np.asarray(output).reshape(len(truth), -1).shape[1] == 2
        decided = positive > (0.0 if two_class else 0.5)
        return (decided == truth.astype(bool)).astype(np.float64)


class Auc:
    """ROC AUC, decomposed per sample so that two runs compare sample by sample.

    A positive sample scores the share of negatives ranked below it, a negative
    the share of positives ranked above it (ties count half). The mean over the
    positives and the mean over the negatives are each the AUC, so the mean over
    all samples is the AUC too.
    """

    name = "auc"
    higher_is_better = True

    def score(self, output: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Per-sample AUC contributions (their mean is the ROC AUC)."""
        positive, truth = _binary_inputs(self.name, output, labels)
        pos, neg = positive[truth == 1], positive[truth == 0]
        if not len(pos) or not len(neg):
            raise CellError("bad_input", "metric 'auc': the evaluation split needs both classes")
        wins = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        scores = np.empty(len(truth))
        scores[truth == 1] = wins.mean(axis=1)
        scores[truth == 0] = wins.mean(axis=0)
        return scores


@zoocompat.hookimpl
def zoocompat_metrics() -> list:
    """The classification metrics of this module."""
    return [Top1(), BinaryAccuracy(), Auc()]
