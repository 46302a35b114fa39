"""Sweeps through a real launcher on the tiny random backbone, and preemption.

- In process: a training step that receives submitit's preemption signal finishes the update
  it is in, saves a checkpoint, and only then hands over to submitit's handler (requeue);
  the requeued run resumes from that checkpoint to the same weights as an uninterrupted one.
- End to end: a 2-member sweep (two seeds) through `hydra/launcher=local_submitit`: members
  run as concurrent processes, one computes the steps they share while the other waits on
  the key's lock and reuses them; both are sent the preemption signal mid-training, are
  requeued and resume from their checkpoints, into the same W&B runs; the sweep ends with
  its report (the seeds pooled into one arm) and W&B member and report runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from helpers import REPO, cli_command, cli_env
from test_training import TINY_SFT, adapter, assert_same_weights, sft_artifact
from wandb_records import offline_runs

from specalign.app import run

STEPS = ("trainer.args.max_steps=6", "trainer.args.save_steps=2",
         "trainer.args.per_device_train_batch_size=4")  # fmt: skip


def test_preemption_saves_a_checkpoint_then_requeues_and_the_rerun_resumes(
    cfg_factory, tmp_path, monkeypatch
):
    straight = sft_artifact(run(cfg_factory(*TINY_SFT, *STEPS), tmp_path / "straight"))
    root = tmp_path / "preempted"
    calls = []

    def submitit_handler(signum, frame):  # what submitit does: checkpoint, requeue, exit
        found = root.glob("store/sft/.work/*/checkpoints/checkpoint-*/trainer_state.json")
        calls.append(sorted(p.parent.name for p in found))
        raise SystemExit(3)

    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    previous = signal.signal(signal.SIGUSR2, submitit_handler)

    def preempt_after_first_checkpoint() -> None:
        deadline = time.time() + 120
        while not list(root.glob("store/sft/.work/*/checkpoints/checkpoint-2/trainer_state.json")):
            if time.time() > deadline:
                return
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGUSR2)

    watcher = threading.Thread(target=preempt_after_first_checkpoint, daemon=True)
    watcher.start()
    try:
        with pytest.raises(SystemExit):
            run(cfg_factory(*TINY_SFT, *STEPS, f"paths.root={root}"), root)
    finally:
        signal.signal(signal.SIGUSR2, previous)
        watcher.join()
    # submitit was called once, after a checkpoint later than the periodic one was saved
    assert len(calls) == 1 and any(c not in ("checkpoint-2",) for c in calls[0]), calls
    assert not list(root.glob("store/sft/*/manifest.json"))  # nothing half-committed
    monkeypatch.delenv("SUBMITIT_EXECUTOR")
    resumed = run(cfg_factory(*TINY_SFT, *STEPS, f"paths.root={root}"), root)
    sft = next(r for r in resumed if r.name == "sft")
    saved = max(int(c.split("-")[1]) for c in calls[0])
    assert sft.metrics["resumed_at_step"] == saved > 2
    assert sft.metrics["steps"] == 6
    assert_same_weights(adapter(sft.artifact.path), adapter(straight), atol=1e-5)


def member_processes(sweep_dir: Path) -> list[int]:
    """The submitit task processes of this sweep (their command line names its folder)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "submitit.core._submit" in cmdline and str(sweep_dir) in cmdline:
            pids.append(int(proc.name))
    return pids


def test_a_submitit_sweep_shares_work_survives_preemption_and_reports(tmp_path):
    sweep_dir = tmp_path / "multirun"
    cmd = cli_command(
        tmp_path,
        "hydra/launcher=local_submitit",
        "experiment=cheese_generalization",
        "stage=sft",
        "spec=pro_america",
        "seed=0,1",
        "backbone=tiny_random",
        "logger=wandb",
        "eval=[preference]",
        "stage.steps.sft.args.num_train_epochs=3",  # 18 steps: time to preempt mid-training
        "trainer.args.save_steps=2",
        f"hydra.sweep.dir={sweep_dir}",
        flags=("--multirun",),
    )
    env = cli_env(tmp_path, OMP_NUM_THREADS="1", SPECALIGN_PROGRESS="log")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.time() + 420
    work = tmp_path / "store" / "sft" / ".work"
    while not list(work.glob("*/checkpoints/checkpoint-2/trainer_state.json")):
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "no training checkpoint appeared"
        time.sleep(0.05)
    pids = member_processes(sweep_dir)
    assert len(pids) == 2, pids  # the two members run at the same time
    for pid in pids:
        os.kill(pid, signal.SIGUSR2)
    out, _ = proc.communicate(timeout=max(deadline - time.time(), 60))
    assert proc.returncode == 0, out

    logs = "".join(p.read_text() for p in sweep_dir.glob(".submitit/*/*_log.*"))
    requeued = [line for line in logs.splitlines() if line.startswith("submitit INFO")]
    assert sum("Requeued job" in line for line in requeued) == 2, logs  # both members
    assert "checkpoint kept" in logs
    summaries = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/summary.json"))]
    assert len(summaries) == 2
    steps = [{s["name"]: s for s in summary["steps"]} for summary in summaries]
    # shared steps: computed once over every attempt of both members; the other member
    # waited on the key's lock and reused it
    running = [
        line for line in logs.splitlines() if "[specalign.pipeline.runner][INFO] - running" in line
    ]
    for name in ("eval_items", "eval_base", "demonstrations"):
        assert sum(f"running {name} (" in line for line in running) == 1, running
        assert len({s[name]["key"] for s in steps}) == 1
    # each seed's own SFT resumed from the checkpoint its preemption saved
    sft = [s["sft"] for s in steps]
    assert sft[0]["key"] != sft[1]["key"]
    resumed = [s for s in sft if s["metrics"]["resumed_from_checkpoint"]]
    assert resumed and all(s["metrics"]["resumed_at_step"] > 0 for s in resumed)
    assert all(s["metrics"]["steps"] == 18 for s in sft)

    # W&B: a resumed step logs into the run it started; members carry their lineage
    runs = offline_runs(tmp_path / "wandb")
    for step in resumed:
        made_by = step["made_by"]["run"]
        assert len(runs[made_by]) == 2  # two offline files, one run id: the resumed run
        config = runs[made_by][-1]["config"]  # the member's choices flat at the top
        assert config["seed"] in (0, 1) and config["experiment"] == "cheese_generalization"
        assert config["step"] == "sft" and config["key"] == step["key"]
    members = [r[-1] for r in runs.values() if r[-1]["run"]["job_type"] == "member"]
    assert sorted(m["config"]["seed"] for m in members) == [0, 1]
    for m, summary in zip(
        sorted(members, key=lambda m: m["config"]["seed"]), summaries, strict=True
    ):
        assert m["run"]["group"] == "cheese_generalization"
        base = next(s for s in summary["steps"] if s["name"] == "eval_base")
        assert m["summary"]["lineage/eval_base/made_by_run"] == base["made_by"]["run"]
        assert m["summary"]["lineage/eval_base/state"] == ("reused" if base["cached"] else "ran")
        assert "eval_sft/preference/accuracy" in m["summary"]
    report_runs = [r[-1] for r in runs.values() if r[-1]["run"]["job_type"] == "report"]
    assert len(report_runs) == 1
    logged = report_runs[0]["history_keys"]
    assert {"table/preference/_type", "figure/preference/_type"} <= logged

    # the report, written as the sweep ended: one base arm, one SFT arm pooling both seeds
    report = (sweep_dir / "report.md").read_text()
    assert (sweep_dir / "figures" / "preference.png").is_file()
    values = [
        next(
            r["value"] for r in s["eval_sft"]["evaluation"]["records"] if r["metric"] == "accuracy"
        )
        for s in steps
    ]
    pooled = f"{sum(values) / 2:.3f}"
    assert any(
        line.startswith("| sft |")
        and "| accuracy |" in line
        and pooled in line
        and line.endswith("| 2 |")
        for line in report.splitlines()
    ), report
