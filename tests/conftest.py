"""Shared fixtures for the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

DATA = Path(__file__).parent / "data"
ZOO = Path(__file__).parent.parent / "zoo" / "cards"


@pytest.fixture
def card_dict() -> dict:
    """A valid card as a dict (the default zoo's ONet card)."""
    return yaml.safe_load((ZOO / "mtcnn_onet.yaml").read_text())


@pytest.fixture
def write_card(tmp_path):
    """Write a dict as a YAML card into a temp folder and return its path."""

    def write(data, name: str = "card.yaml") -> Path:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
        return path

    return write
