"""Fixtures shared by the suite (helpers live in tests/helpers.py)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
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


# What makes the app join a process group (torchrun's and SLURM's variables): a test that
# sets one and leaks it makes a later in-process run wait forever at the rendezvous.
PROCESS_GROUP_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                     "MASTER_PORT", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")  # fmt: skip


@pytest.fixture(autouse=True)
def no_process_group_env_leaks() -> Iterator[None]:
    """Restore the process-group variables after every test, whoever set them (the app's
    SLURM export writes os.environ directly, which monkeypatch does not undo)."""
    before = {name: os.environ.get(name) for name in PROCESS_GROUP_ENV}
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
