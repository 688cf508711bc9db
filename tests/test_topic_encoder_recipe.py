"""The topic_sentences dataset and the topic_encoder card: labels by construction, splits apart, inputs by name.

Nothing here trains the model (the matrix runs the recipe once and caches it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from zoocompat_plugins.datasets import topics
from zoocompat_zoo.models import text_encoder

from zoocompat.api.errors import CellError
from zoocompat.api.registry import registry
from zoocompat.model.cards import load_card
from zoocompat.model.data import build_card_data

CARD = Path(__file__).resolve().parents[1] / "zoo" / "cards" / "topic_encoder.yaml"


def _load(split: str, seed: int = 0, **params):
    return registry().get("dataset", "topic_sentences").load(split, seed, params)


def _rows(pool) -> set[bytes]:
    return {row.tobytes() for row in pool.samples["input_ids"]}


def test_vocabulary_layout():
    assert topics.VOCAB[:3] == ["[PAD]", "[UNK]", "[CLS]"]
    words = topics.VOCAB[3:]
    assert words == sorted(set(words)), "words sorted, each once"
    assert len(topics.VOCAB) <= text_encoder.VOCAB_SIZE, "every id has an embedding row"
    for groups in topics.TOPIC_WORDS.values():
        assert sum(len(group) for group in groups.values()) == 30
    assert 35 <= sum(len(group) for group in topics.FUNCTION_WORDS.values()) <= 45
    for word, _, pair in topics.SHARED_WORDS:
        assert word not in topics.WORD_TOPIC and len(set(pair)) == 2 and set(pair) <= set(topics.TOPICS)


def test_samples_are_padded_token_rows():
    pool = _load("test", count=64)
    ids, mask = pool.samples["input_ids"], pool.samples["attention_mask"]
    assert set(pool.samples) == {"input_ids", "attention_mask"}
    assert ids.shape == mask.shape == (64, 32) and ids.dtype == mask.dtype == np.int64
    assert (ids[:, 0] == topics.WORD_IDS["[CLS]"]).all()
    np.testing.assert_array_equal(mask, (ids != 0).astype(np.int64))
    lengths = mask.sum(axis=1)
    assert (lengths >= 1 + topics.MIN_WORDS).all() and (lengths <= 1 + topics.MAX_WORDS).all()
    for row, length in zip(ids, lengths, strict=True):
        assert (row[:length] != 0).all() and (row[length:] == 0).all(), "padding only at the end"
    assert not (ids == topics.WORD_IDS["[UNK]"]).any()
    assert pool.classes == topics.TOPICS


def test_labels_are_the_generating_topic():
    pool = _load("test", count=200)
    np.testing.assert_array_equal(pool.labels, np.arange(200) % 4)
    for ids, mask, label in zip(pool.samples["input_ids"], pool.samples["attention_mask"], pool.labels, strict=True):
        counts = topics.topic_counts(topics.decode(ids, mask))
        others = np.delete(counts, label)
        assert counts[label] >= 2 and counts[label] > others.max(), "the label's own words outnumber the rest"


def test_deterministic_for_a_seed():
    a, b = _load("train", count=40), _load("train", count=40)
    for name in ("input_ids", "attention_mask"):
        np.testing.assert_array_equal(a.samples[name], b.samples[name])
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(_load("train", seed=1, count=40).samples["input_ids"], a.samples["input_ids"])


def test_splits_never_share_a_sentence():
    train, test = _load("train", count=2000), _load("test", count=500)
    assert len(_rows(train)) == 2000 and len(_rows(test)) == 500, "no sentence repeats within a split"
    assert not _rows(train) & _rows(test)
    assert not _rows(_load("train", seed=3, count=500)) & _rows(test), "apart whatever the seeds"
    assert all(topics.split_of(row) == "test" for row in test.samples["input_ids"])


def test_bad_params_are_refused():
    with pytest.raises(CellError, match="count"):
        _load("test", count=0)
    with pytest.raises(CellError, match="unknown dataset.params"):
        _load("test", size=3)
    with pytest.raises(CellError, match="split"):
        _load("valid")


def test_card_feeds_both_inputs_by_name():
    card = load_card(CARD)
    data = build_card_data(card, registry().get("dataset", card.dataset.name))
    assert data.evaluation["input_ids"].shape == (400, 32) and data.calibration["attention_mask"].shape == (64, 32)
    assert data.evaluation["input_ids"].dtype == np.int64 and data.labels.shape == (400,)
    ids, mask = data.evaluation["input_ids"], data.evaluation["attention_mask"]
    np.testing.assert_array_equal(mask, (ids != 0).astype(np.int64))


def test_model_ignores_padding():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = text_encoder.TextEncoder().eval()
    pool = _load("test", count=4)
    ids = torch.from_numpy(pool.samples["input_ids"])
    mask = torch.from_numpy(pool.samples["attention_mask"])
    noisy = torch.where(mask.bool(), ids, torch.randint(3, len(topics.VOCAB), ids.shape))
    with torch.no_grad():
        clean, changed = model(ids, mask), model(noisy, mask)
    assert clean.shape == (4, 4)
    torch.testing.assert_close(clean, changed, atol=1e-5, rtol=0)
