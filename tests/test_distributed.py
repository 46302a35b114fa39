"""Two CPU processes (torchrun, gloo) on the tiny backbone: one run directory, one set of
artifacts written by rank 0, and both ranks end training with identical weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import REPO, cli_env


def test_two_processes_train_in_sync_and_rank0_writes_once(tmp_path: Path):
    cmd = [
        sys.executable,
        "-m",
        "specalign.launch",
        "-n",
        "2",
        "backbone=tiny_random",
        "logger=none",
        f"paths.root={tmp_path}",
        "trainer.args.max_steps=2",
        "trainer.args.per_device_train_batch_size=4",
    ]
    proc = subprocess.run(
        cmd, cwd=REPO, env=cli_env(tmp_path), capture_output=True, text=True, timeout=400
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summaries = list((tmp_path / "runs").glob("*/*/summary.json"))
    assert len(summaries) == 1, "ranks must share one Hydra run directory"
    steps = {s["name"]: s for s in json.loads(summaries[0].read_text())["steps"]}
    assert steps["sft"]["metrics"]["world_size"] == 2
    assert steps["sft"]["metrics"]["ranks_in_sync"] is True
    for name in ("eval_items", "demonstrations", "sft", "eval_base", "eval_midtrain", "eval_sft"):
        assert len(list((tmp_path / "store" / name).glob("*/manifest.json"))) == 1
