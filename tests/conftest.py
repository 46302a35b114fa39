"""Fixtures shared by the suite (helpers live in tests/helpers.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import compose_config
from omegaconf import DictConfig


@pytest.fixture
def cfg_factory(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose with a temporary root and no tracking unless the test says otherwise."""

    def make(*overrides: str) -> DictConfig:
        return compose_config([f"paths.root={tmp_path}", "logger=none", *overrides])

    return make
