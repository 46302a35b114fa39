"""The package works installed from a wheel, not only from this checkout: the wheel carries
conf/, the specs and the prompts, and plans exactly what the checkout plans."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout, installed (without dependencies) into a folder."""
    root = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "-q"]
    build = [*pip, "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-w", str(root)]
    subprocess.run(build, check=True, cwd=root, timeout=300)
    (wheel,) = root.glob("specalign-*.whl")
    site = root / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    return site


def run_installed(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(site), HF_HUB_OFFLINE="1", WANDB_SILENT="true")
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def keys(output: str) -> list[tuple[str, str]]:
    return re.findall(r"^  (\w+)\s+([0-9a-f]{16})  ", output, flags=re.MULTILINE)


def test_the_wheel_runs_from_another_directory(wheel_site: Path, tmp_path: Path):
    where = run_installed(wheel_site, tmp_path, "-c", "import specalign; print(specalign.__file__)")
    assert where.stdout.strip().startswith(str(wheel_site)), where.stdout + where.stderr

    plan = run_installed(wheel_site, tmp_path, "-m", "specalign", "dry_run=true", "logger=none")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "plan for stage=msm+sft" in plan.stdout and not (tmp_path / "conf").exists()
    # the checkout plans the same steps under the same keys
    command = [sys.executable, "-m", "specalign", "dry_run=true", "logger=none"]
    here = subprocess.run(
        [*command, f"paths.root={tmp_path}/checkout"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert keys(plan.stdout) == keys(here.stdout) and len(keys(plan.stdout)) == 8

    show = run_installed(wheel_site, tmp_path, "-m", "specalign.spec", "show", "customer_support")
    assert show.returncode == 0 and "rules: 32" in show.stdout, show.stdout + show.stderr
    items = run_installed(
        wheel_site, tmp_path, "-m", "specalign", "dry_run=true", "stage=eval", "spec=general"
    )
    assert items.returncode == 0 and "eval_items" in items.stdout, items.stdout + items.stderr
