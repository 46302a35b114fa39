"""Two CPU processes (torchrun, gloo) on the tiny backbone: one run directory, one set of
artifacts written by rank 0, and both ranks end training with identical weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, TEST_CONF, cli_env


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
        # the synthesis and evals upstream and downstream of training, capped: this test is
        # about the ranks (rank 0 synthesizes and evaluates alone while rank 1 waits)
        "stage.steps.documents.max_documents=4",
        "eval.evaluators.forced_choice.max_items=4",
        "eval.evaluators.preference.max_items=6",
        "eval.evaluators.rule_compliance.max_items=3",
        "eval.evaluators.rule_compliance.max_tokens=8",
        "eval.evaluators.refusal.per_source=1",
        "eval.evaluators.refusal.max_tokens=8",
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


PAIRS = Path(__file__).parent / "data" / "pairs.jsonl"
DPO = (
    f"hydra.searchpath=[file://{TEST_CONF}]",
    "stage=dpo_fixed",
    "backbone=tiny_random",
    f"+spec.preference_pairs={PAIRS}",
    "logger=none",
    "trainer.adapter.lora_dropout=0.0",  # no random masks: ranks and runs see the same model
    "trainer.args.max_steps=3",
    "trainer.args.learning_rate=1e-2",
    "trainer.args.lr_scheduler_type=constant",
)


def test_two_process_dpo_matches_one_process_with_the_same_global_batch(tmp_path: Path):
    """Reference log-probs of every pair (not rank 0's shard), in order; then the same losses
    and weights as one process at the same global batch (2 ranks x 2 = 1 x 4)."""
    import torch
    from safetensors.torch import load_file

    from specalign.pipeline.dataset_io import load_dataset
    from specalign.pipeline.step import Artifact

    one, two = tmp_path / "one", tmp_path / "two"
    single = [sys.executable, "-m", "specalign", *DPO, f"paths.root={one}"]
    single.append("trainer.args.per_device_train_batch_size=4")
    proc = subprocess.run(single, cwd=REPO, env=cli_env(one), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    launch = [sys.executable, "-m", "specalign.launch", "-n", "2", *DPO, f"paths.root={two}"]
    launch.append("trainer.args.per_device_train_batch_size=2")
    proc = subprocess.run(
        launch, cwd=REPO, env=cli_env(two), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    def artifact(root: Path, step: str) -> Artifact:
        (path,) = (root / "store" / step).glob("*/manifest.json")
        return Artifact(step, "dataset", path.parent.name, path.parent)

    refs = [load_dataset(artifact(root, "ref_logps")) for root in (one, two)]
    assert len(refs[0]) == len(refs[1]) == 24
    for column in ("ref_chosen_logps", "ref_rejected_logps"):
        assert refs[0][column] == pytest.approx(refs[1][column], abs=1e-5)
    runs = [artifact(root, "dpo") for root in (one, two)]
    metrics = [run.manifest["metrics"] for run in runs]
    assert metrics[1]["world_size"] == 2 and metrics[1]["ranks_in_sync"] is True
    for name in ("loss_first", "loss_last", "train_loss"):
        assert metrics[0][name] == pytest.approx(metrics[1][name], abs=1e-4), name
    assert metrics[0]["loss_last"] < metrics[0]["loss_first"]  # it did train
    weights = [load_file(str(run.path / "adapter" / "adapter_model.safetensors")) for run in runs]
    # Adam steps each element by m / sqrt(v): an element whose gradient nearly cancels over
    # the batch takes a step that depends on the float summation order (the two ranks'
    # all-reduce vs one process's sum), so single elements may differ by ~1% of the learning
    # rate (measured: 1 of 33k at 1.1e-4 with transformers 5.24); every other element agrees
    # to 1e-5. Unsynchronized or wrongly sharded training moves most elements by ~lr (1e-2).
    diffs = torch.cat([(weights[0][k] - weights[1][k]).abs().flatten() for k in weights[0]])
    assert diffs.max().item() < 1e-3
    assert (diffs > 1e-5).float().mean().item() < 1e-3
