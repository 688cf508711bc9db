"""Top-1, binary accuracy and per-sample ROC AUC."""

from __future__ import annotations

import numpy as np
import pytest
from zoocompat_plugins.metrics.classification import Auc, BinaryAccuracy, Top1

from zoocompat.api.errors import CellError


def test_auc_per_sample_mean_is_the_roc_auc():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = labels * 0.6 + rng.random(200)
    pos, neg = scores[labels == 1], scores[labels == 0]
    expected = np.mean([[float(p > n) + 0.5 * float(p == n) for n in neg] for p in pos])
    assert Auc().score(scores, labels).mean() == pytest.approx(expected)
    assert Auc().score(np.stack([-scores, scores], axis=1), labels).mean() == pytest.approx(expected)


def test_binary_accuracy_two_class_and_single_score():
    labels = np.array([0, 1, 1, 0])
    assert BinaryAccuracy().score(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]]), labels).tolist() == [
        1.0,
        1.0,
        0.0,
        0.0,
    ]
    assert BinaryAccuracy().score(np.array([0.1, 0.9, 0.4, 0.2]), labels).tolist() == [1.0, 1.0, 0.0, 1.0]


def test_binary_metrics_refuse_non_binary_labels_and_one_class_splits():
    with pytest.raises(CellError, match="labels must be 0/1"):
        Auc().score(np.zeros(3), np.array([0, 1, 2]))
    with pytest.raises(CellError, match="both classes"):
        Auc().score(np.zeros(3), np.array([1, 1, 1]))
    with pytest.raises(CellError, match="N x 2 class scores"):
        BinaryAccuracy().score(np.zeros((3, 5)), np.array([0, 1, 1]))


def test_top1():
    assert Top1().score(np.eye(3), np.array([0, 1, 0])).tolist() == [1.0, 1.0, 0.0]
