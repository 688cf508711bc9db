"""The artifact cache builds once, rebuilds a corrupted entry, keeps no partial entry."""

from __future__ import annotations

import pytest

from zoocompat.api.cache import ArtifactCache, key_of


def test_builds_once_and_verifies(tmp_path):
    cache = ArtifactCache(tmp_path)
    calls = []

    def build(out):
        calls.append(out)
        (out / "a.txt").write_text("hello")

    first = cache.entry("stage", key_of("x"), build)
    second = cache.entry("stage", key_of("x"), build)
    assert first == second and len(calls) == 1
    (first / "a.txt").write_text("tampered")
    third = cache.entry("stage", key_of("x"), build)
    assert len(calls) == 2 and (third / "a.txt").read_text() == "hello"


def test_failed_build_leaves_nothing(tmp_path):
    cache = ArtifactCache(tmp_path)

    def broken(out):
        (out / "half.txt").write_text("half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        cache.entry("stage", "k", broken)
    assert not (tmp_path / "stage" / "k").exists()
    assert [p.name for p in (tmp_path / "stage").iterdir() if not p.name.endswith(".lock")] == []


def test_key_is_stable_and_sensitive():
    assert key_of("a", {"b": 1, "c": 2}) == key_of("a", {"c": 2, "b": 1})
    assert key_of("a", 1) != key_of("a", 2)
