"""Training-step guarantees on the tiny random backbone: resume equivalence, invariance to
how a batch is split across accumulation steps, and the resume= modes."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from helpers import cli_command, cli_env
from peft import LoraConfig
from safetensors.torch import load_file

from specalign.app import run
from specalign.errors import ConfigError
from specalign.pipeline.context import RunContext
from specalign.pipeline.step import Artifact
from specalign.train.model_artifact import base_of, load_model, save_model

TINY_SFT = (
    "backbone=tiny_random",
    "trainer.adapter.lora_dropout=0.0",  # dropout would make runs differ by batch layout
    "trainer.args.learning_rate=1e-3",
    "stage=sft",
    "stage.steps.sft.args.num_train_epochs=1",
    "~stage.steps.eval_base",  # these tests are about the training step alone
    "~stage.steps.eval_sft",
)


def adapter(result_path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(result_path / "adapter" / "adapter_model.safetensors"))


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float):
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= atol, f"weights differ by {worst}"


def sft_artifact(results) -> Path:
    return next(r.artifact.path for r in results if r.name == "sft")


def test_killed_training_resumes_to_the_same_weights(cfg_factory, tmp_path):
    steps = (
        "trainer.args.max_steps=6",
        "trainer.args.save_steps=2",
        "trainer.args.per_device_train_batch_size=4",
    )
    straight = sft_artifact(run(cfg_factory(*TINY_SFT, *steps), tmp_path / "straight"))

    root = tmp_path / "killed"
    cmd = cli_command(root, *TINY_SFT, *steps, "logger=none")
    proc = subprocess.Popen(
        cmd,
        env=cli_env(root),
        cwd=Path(__file__).parent.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while not list(root.glob("store/sft/.work/*/checkpoints/checkpoint-2/trainer_state.json")):
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.1)
    time.sleep(0.5)  # let the checkpoint finish writing its last file
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list(root.glob("store/sft/*/manifest.json")), "a killed step left an artifact"

    resumed = run(cfg_factory(*TINY_SFT, *steps, f"paths.root={root}"), root)
    sft = next(r for r in resumed if r.name == "sft")
    assert sft.metrics["resumed_from_checkpoint"] is True
    assert_same_weights(adapter(sft.artifact.path), adapter(straight), atol=1e-5)


def test_resume_skips_a_checkpoint_the_kill_cut_short(tmp_path):
    """A run killed while saving leaves the newest checkpoint without its trainer state (the
    Trainer writes it last) or with it cut short: resume takes the newest complete one."""
    from specalign.train.training_args import last_checkpoint

    def checkpoint(step: int, state: str | None) -> Path:
        path = tmp_path / f"checkpoint-{step}"
        path.mkdir()
        (path / "adapter_model.safetensors").write_bytes(b"weights")
        if state is not None:
            (path / "trainer_state.json").write_text(state)
        return path

    assert last_checkpoint(tmp_path / "none") is None
    checkpoint(2, '{"global_step": 2}')
    ten = checkpoint(10, '{"global_step": 10}')
    checkpoint(12, '{"global_st')  # killed while writing the state
    checkpoint(14, None)  # killed before it
    assert last_checkpoint(tmp_path) == str(ten)  # numerically newest, not by name
    (tmp_path / "checkpoint-14" / "trainer_state.json").write_text('{"global_step": 14}')
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-14")


def test_batch_4_x_accum_1_matches_batch_1_x_accum_4(cfg_factory, tmp_path):
    one_step = ("trainer.args.max_steps=2",)
    big = run(
        cfg_factory(
            *TINY_SFT,
            *one_step,
            "trainer.args.per_device_train_batch_size=4",
            "trainer.args.gradient_accumulation_steps=1",
        ),
        tmp_path / "a",
    )
    small = run(
        cfg_factory(
            *TINY_SFT,
            *one_step,
            "trainer.args.per_device_train_batch_size=1",
            "trainer.args.gradient_accumulation_steps=4",
        ),
        tmp_path / "b",
    )
    assert_same_weights(adapter(sft_artifact(big)), adapter(sft_artifact(small)), atol=1e-4)


def test_resume_must_without_checkpoint_fails_with_the_fix(cfg_factory, tmp_path):
    with pytest.raises(ConfigError, match="resume=must, but there is no checkpoint"):
        run(cfg_factory(*TINY_SFT, "trainer.args.max_steps=1", "resume=must"), tmp_path)


def test_sft_loss_decreases(cfg_factory, tmp_path):
    results = run(
        cfg_factory(
            "backbone=tiny_random",
            "trainer=full",
            "trainer.args.max_steps=8",
            "trainer.args.learning_rate=3e-3",
            "trainer.args.per_device_train_batch_size=8",
            "stage=sft",  # the fixed demonstrations: no synthesis upstream of the step
            "~stage.steps.eval_base",  # only the training step matters here
            "~stage.steps.eval_sft",
        ),
        tmp_path,
    )
    metrics = next(r.metrics for r in results if r.name == "sft")
    assert metrics["loss_last"] < metrics["loss_first"] - 0.5, metrics


def test_a_training_step_continues_the_adapter_it_receives(cfg_factory, tmp_path):
    """sft2 trains with lr 0 from sft's adapter: it must save exactly that adapter (a fresh
    LoRA would have all-zero B matrices instead)."""
    overrides = (*TINY_SFT[:3], "stage=sft_twice", "trainer.args.max_steps=2")
    results = {r.name: r for r in run(cfg_factory(*overrides), tmp_path)}
    assert results["sft2"].metrics["started_from"] == "adapter"
    first, second = adapter(results["sft"].artifact.path), adapter(results["sft2"].artifact.path)
    assert any(w.abs().sum() > 0 for k, w in first.items() if "lora_B" in k)
    assert_same_weights(first, second, atol=0.0)
    fresh_cfg = cfg_factory(*overrides, "+stage.steps.sft2.new_adapter=true")
    fresh = {r.name: r for r in run(fresh_cfg, tmp_path)}
    new = adapter(fresh["sft2"].artifact.path)
    assert all(w.abs().sum() == 0 for k, w in new.items() if "lora_B" in k)
    # ... and that fresh adapter loads on top of what it was trained on: sft's model, merged
    backbone = RunContext(fresh_cfg).backbone
    before, after = (logits(load_model(backbone, fresh[n].artifact)) for n in ("sft", "sft2"))
    assert (before - logits(backbone.load_model())).abs().max() > 1e-3  # sft did train
    assert (after - before).abs().max() < 1e-4, "new_adapter dropped the earlier training"


PROBE = [[1, 42, 7, 99, 512, 3, 1000, 17]]


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(input_ids=torch.tensor(PROBE)).logits


def test_an_adapter_on_full_weights_loads_on_them(cfg_factory, tmp_path):
    """LoRA trained on top of a full-weights artifact (lr 0: B = 0) must load as those
    weights, not as the raw backbone with the adapter."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    backbone = RunContext(cfg_factory("backbone=tiny_random")).backbone
    tokenizer = backbone.load_tokenizer()
    store = tmp_path / "store"
    full = backbone.load_model()
    with torch.no_grad():
        for p in full.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_model(full, tokenizer, backbone, store / "sft" / "k1")
    full_artifact = Artifact("sft", "model", "k1", store / "sft" / "k1")
    on_full = AutoModelForCausalLM.from_pretrained(str(store / "sft" / "k1" / "model"))
    lora = get_peft_model(on_full, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    save_model(lora, tokenizer, backbone, store / "dpo" / "k2", base_of(full_artifact, False))
    loaded = load_model(backbone, Artifact("dpo", "model", "k2", store / "dpo" / "k2"))
    assert (logits(load_model(backbone, full_artifact)) - logits(loaded)).abs().max() < 1e-5
    assert (logits(backbone.load_model()) - logits(loaded)).abs().max() > 1e-3
