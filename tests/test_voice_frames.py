"""The voice_frames dataset: three model-ready inputs per frame, deterministic, splits apart."""

from __future__ import annotations

import numpy as np

from zoocompat.api.registry import registry


def _load(split: str, count: int = 20):
    return registry().get("dataset", "voice_frames").load(split, 0, {"count": count})


def test_frames_feed_a_vad_three_inputs():
    pool = _load("test")
    assert set(pool.samples) == {"audio", "state", "sr"}
    audio, state, sr = pool.samples["audio"], pool.samples["state"], pool.samples["sr"]
    assert audio.shape == (20, 512) and audio.dtype == np.float32 and np.abs(audio).max() <= 1
    assert state.shape == (20, 2, 1, 128) and not state.any()
    assert sr.dtype == np.int64 and (sr == 16000).all()
    assert pool.labels.tolist() == [0, 1] * 10
    voiced, background = audio[pool.labels == 1], audio[pool.labels == 0]
    assert np.abs(voiced).mean() > np.abs(background).mean()  # a voice is louder than the noise it is mixed in


def test_deterministic_and_splits_apart():
    np.testing.assert_array_equal(_load("test").samples["audio"], _load("test").samples["audio"])
    assert not np.array_equal(_load("train").samples["audio"], _load("test").samples["audio"])
