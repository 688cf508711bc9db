"""Checks every dataset plugin applies to its split, seed and ``dataset.params``."""

from __future__ import annotations

from typing import Any

from zoocompat.api.errors import CellError

SPLITS = ("train", "test")


def check_split(dataset: str, split: str) -> None:
    """Refuse a split other than ``train`` / ``test``."""
    if split not in SPLITS:
        raise CellError("bad_input", f"dataset {dataset!r}: unknown split {split!r}; use one of {SPLITS}")


def check_params(dataset: str, params: dict[str, Any], allowed: tuple[str, ...] | list[str]) -> None:
    """Refuse ``dataset.params`` keys the dataset does not take."""
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise CellError(
            "bad_input",
            f"dataset {dataset!r}: unknown dataset.params {unknown}; allowed: {list(allowed) or 'none'}",
        )


def check_seed(dataset: str, seed: int) -> None:
    """Refuse a negative seed (numpy's generators need seeds >= 0)."""
    if seed < 0:
        raise CellError("bad_input", f"dataset {dataset!r}: dataset.seed must be >= 0, got {seed}")


def int_param(dataset: str, params: dict[str, Any], key: str, default: int, minimum: int) -> int:
    """``params[key]`` (or ``default``) as an integer >= ``minimum``."""
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CellError(
            "bad_input",
            f"dataset {dataset!r}: dataset.params.{key} must be an integer >= {minimum}, got {value!r}",
        )
    return value


def bool_param(dataset: str, params: dict[str, Any], key: str, default: bool) -> bool:
    """``params[key]`` (or ``default``) as true / false."""
    value = params.get(key, default)
    if not isinstance(value, bool):
        raise CellError("bad_input", f"dataset {dataset!r}: dataset.params.{key} must be true or false, got {value!r}")
    return value
