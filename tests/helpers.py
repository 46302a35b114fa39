"""Test helpers: compose configs in-process and run the CLI in a subprocess, offline, under
a temporary paths.root so nothing touches the repo's outputs/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf"
TEST_CONF = REPO / "tests" / "conf"
TESTS = REPO / "tests"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_SILENT", "true")


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(
            config_name="config",
            overrides=[f"hydra.searchpath=[file://{TEST_CONF}]", *(overrides or [])],
        )


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(REPO), env.get("PYTHONPATH", "")])
    env["SPECALIGN_TEST_RUNLOG"] = str(tmp_path / "runlog.txt")
    env.update(extra)
    return env


def cli_command(tmp_path: Path, *overrides: str, flags: tuple[str, ...] = ()) -> list[str]:
    """`python -m specalign FLAGS OVERRIDES` with the test stages on the search path (Hydra's
    argparse needs flags such as --multirun before the overrides)."""
    return [
        sys.executable,
        "-m",
        "specalign",
        *flags,
        f"hydra.searchpath=[file://{TEST_CONF}]",
        f"paths.root={tmp_path}",
        *overrides,
    ]


def run_cli(
    tmp_path: Path,
    *overrides: str,
    flags: tuple[str, ...] = (),
    check: bool = True,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    cmd = cli_command(tmp_path, *overrides, flags=flags)
    proc = subprocess.run(
        cmd, cwd=REPO, env=cli_env(tmp_path), capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def runlog(tmp_path: Path) -> list[str]:
    path = tmp_path / "runlog.txt"
    return path.read_text().splitlines() if path.exists() else []
