"""DPO with cached reference log-probs on the tiny random backbone: fixed pairs -> reference
log-probs (once) -> TRL DPO reading them. The equivalence tests compare against TRL's own
code paths (its precompute, its reference forward), since matching TRL is the claim."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from helpers import compose_config

from specalign.app import run
from specalign.errors import ConfigError, SpecAlignError
from specalign.pipeline.context import RunContext
from specalign.pipeline.dataset_io import load_dataset
from specalign.train.dpo import REF_COLUMNS, cached_ref_trainer_class, dpo_config, loss_terms

PAIRS = Path(__file__).parent / "data" / "pairs.jsonl"
STAGE = ("stage=dpo_fixed", "backbone=tiny_random", f"+spec.preference_pairs={PAIRS}")
TRAIN = (
    "trainer.args.max_steps=3",
    "trainer.args.per_device_train_batch_size=4",
    "trainer.args.learning_rate=1e-2",
    "trainer.args.lr_scheduler_type=constant",
)


@pytest.fixture(scope="module")
def stage_run(tmp_path_factory):
    """One end-to-end run of the stage (shared: training is the slow part)."""
    root = tmp_path_factory.mktemp("dpo")
    cfg = compose_config([f"paths.root={root}", "logger=none", *STAGE, *TRAIN])
    return cfg, root, {r.name: r for r in run(cfg, root)}


def test_stage_trains_from_cached_reference_and_reuses_it(stage_run):
    cfg, root, results = stage_run
    assert list(results) == ["pairs", "ref_logps", "dpo"]
    assert not any(r.cached for r in results.values())
    row = json.loads((results["pairs"].artifact.path / "preview.jsonl").read_text().splitlines()[0])
    assert row["prompt"] == [{"role": "user", "content": "How should I store fresh basil?"}]
    assert row["chosen"][0]["role"] == "assistant" and row["topic"] == "everyday"

    ref = results["ref_logps"].metrics
    assert (ref["rows"], ref["rows_dropped"], ref["reference"]) == (24, 0, "backbone")
    dpo = results["dpo"].metrics
    assert dpo["steps"] == 3 and dpo["loss_type"] == ["sigmoid"]
    # policy == reference at step 0 (fresh LoRA, B = 0): sigmoid DPO loss is exactly log 2
    assert dpo["loss_first"] == pytest.approx(math.log(2), abs=1e-4)
    assert dpo["reward_accuracy_first"] == 0.0 and dpo["reward_margin_first"] == 0.0
    assert dpo["reward_margin_last"] > dpo["reward_margin_first"]
    assert dpo["reward_accuracy_last"] > dpo["reward_accuracy_first"]
    assert dpo["loss_last"] < dpo["loss_first"]
    info = json.loads((results["dpo"].artifact.path / "model.json").read_text())
    assert info["format"] == "adapter"

    again = {r.name: r for r in run(cfg, root)}
    assert all(r.cached for r in again.values()), "an identical re-run must recompute nothing"
    assert again["ref_logps"].artifact.path == results["ref_logps"].artifact.path


def trl_trainer(cfg, root: Path, dataset, *, precompute: bool, cached: bool, policy_seed=None):
    """A DPOTrainer under the stage's own DPOConfig on a fresh LoRA over the backbone; with
    `policy_seed`, LoRA B is randomised so the policy differs from the reference."""
    from trl import DPOTrainer

    ctx = RunContext(cfg)
    backbone, trainer_cfg = ctx.backbone, ctx.section("trainer")
    from hydra.utils import instantiate

    args = dpo_config(
        {"args": {"per_device_train_batch_size": 4}},
        trainer_cfg,
        root / "trl",
        max_length=256,
        seed=0,
        report_to="none",
    )
    args.precompute_ref_log_probs = precompute
    cls = cached_ref_trainer_class() if cached else DPOTrainer
    trainer = cls(
        model=backbone.load_model(),
        args=args,
        train_dataset=dataset,
        processing_class=backbone.load_tokenizer(),
        peft_config=instantiate(trainer_cfg["adapter"]),
    )
    if policy_seed is not None:
        gen = torch.Generator().manual_seed(policy_seed)
        for name, param in sorted(trainer.model.named_parameters()):
            if "lora_B" in name:
                param.data = torch.randn(param.shape, generator=gen) * 0.05
    trainer.model.eval()
    return trainer


def first_batch(trainer):
    from torch.utils.data import DataLoader

    loader = DataLoader(
        trainer._remove_unused_columns(trainer.train_dataset),
        batch_size=4,
        collate_fn=trainer.data_collator,
    )
    return next(iter(loader))


def test_cached_reference_equals_trl_precompute(stage_run):
    """TRL's own `_precompute_ref_logps` (adapter disabled = backbone) on the raw pairs gives
    the numbers the ref_logps step stored, row by row."""
    cfg, root, results = stage_run
    ours = load_dataset(results["ref_logps"].artifact)
    raw = load_dataset(results["pairs"].artifact)
    trl = trl_trainer(cfg, root, raw, precompute=True, cached=False).train_dataset
    assert trl["chosen"] == ours["chosen"]
    for column in REF_COLUMNS:
        assert torch.allclose(torch.tensor(trl[column]), torch.tensor(ours[column]), atol=1e-4)


def test_loss_with_cached_reference_matches_trl_reference_forward(stage_run):
    """Same batch, a policy that differs from the reference: the loss from cached columns
    equals plain TRL's with a reference forward (adapter disabled)."""
    cfg, root, results = stage_run
    ours = load_dataset(results["ref_logps"].artifact)
    raw = load_dataset(results["pairs"].artifact)
    cached = trl_trainer(cfg, root, ours, precompute=True, cached=True, policy_seed=1)
    plain = trl_trainer(cfg, root, raw, precompute=False, cached=False, policy_seed=1)
    with torch.no_grad():
        loss_cached = cached.compute_loss(cached.model, first_batch(cached))
        loss_plain = plain.compute_loss(plain.model, first_batch(plain))
    assert abs(float(loss_cached) - math.log(2)) > 1e-3, "policy should differ from reference"
    assert float(loss_cached) == pytest.approx(float(loss_plain), abs=1e-4)


def test_sft_ratio_maps_onto_trl_loss_weights():
    assert loss_terms({}) == {"loss_type": ["sigmoid"], "loss_weights": None}
    assert loss_terms({"sft_ratio": 0.25}) == {
        "loss_type": ["sigmoid", "sft"],
        "loss_weights": [0.75, 0.25],
    }
    with pytest.raises(ConfigError, match="sft_ratio"):
        loss_terms({"sft_ratio": 1.0})


def test_bad_pairs_file_names_the_line(tmp_path):
    from specalign.synth.fixed_pairs import FixedPreferencePairs

    bad = tmp_path / "bad.jsonl"
    good = json.dumps({"prompt": "hi", "chosen": "hello", "rejected": "go away"})
    bad.write_text(good + "\n\n" + json.dumps({"prompt": "hi", "chosen": "a", "rejected": "a"}))
    cfg = compose_config(
        [f"paths.root={tmp_path}", "logger=none", *STAGE[:2], f"+spec.preference_pairs={bad}"]
    )
    step = FixedPreferencePairs("pairs", {}, RunContext(cfg))
    with pytest.raises(SpecAlignError, match=rf"{bad}:3: .*identical"):
        step.run({}, tmp_path / "out", tmp_path / "work")
    bad.write_text(json.dumps({"prompt": "hi", "chosen": "a"}))
    with pytest.raises(SpecAlignError, match=r"bad.jsonl:1: missing field.*preference_pairs"):
        step.run({}, tmp_path / "out", tmp_path / "work")
