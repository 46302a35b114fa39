"""stage=specalign and stage=aft end to end on the tiny random backbone, at the CPU sizes
the embedded model runs them at (conf/sizes/tiny_random/ -> smollm2_135m/): data that is not
empty, a trained model, evaluations. The planner's JSON, which a random model never writes
unconstrained (tests/test_adversarial_pairs.py), comes back valid under constrained
decoding. At the default initialisation a random model's P(Yes) is ~0.42 for every question
(no judge ever says both Yes and No); with `initializer_range=1.0` its distributions are
peaked and depend on the prompt, so judges answer Yes to some replies and No to others and
the gates have something to keep. Plumbing, not a verdict on the data."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import compose_config

from specalign.app import run
from specalign.pipeline.dataset_io import load_dataset

TRAIN = ("trainer.args.max_steps=2", "trainer.args.per_device_train_batch_size=2")
PEAKED = "backbone.initializer_range=1.0"


def run_stage(root: Path, *overrides: str) -> dict:
    cfg = compose_config(
        [f"paths.root={root}", "logger=none", "backbone=tiny_random", *TRAIN, *overrides]
    )
    return {r.name: r for r in run(cfg, root)}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One store for both stages: the eval items and the backbone's evaluation are shared,
    as in a user's root (each stage still trains and evaluates its own model)."""
    return tmp_path_factory.mktemp("stages")


def test_specalign_stage_end_to_end(root: Path):
    results = run_stage(
        root,
        "stage=specalign",
        PEAKED,
        "stage.steps.instances.count=12",
        "stage.steps.instances.min_rules=1",  # one rule: a random judge passes a reply at 1/2
        "stage.steps.instances.max_rules=1",
        "stage.steps.pairs.attack_max_words=1000",  # free text: random words, unbounded
        "stage.steps.pairs.response_max_words=1000",
        "stage.steps.pairs.min_quality=0.0",
    )
    pairs = results["pairs"].metrics
    assert pairs["constrained/planner"] >= 8  # the CPU size: 8 instances, one round
    assert "dropped/planner_reject" not in pairs
    rows = list(load_dataset(results["pairs"].artifact))
    assert rows and pairs["rows"] == len(rows)
    assert all(r["target_rule"] in r["rule_ids"] for r in rows)
    assert results["dpo"].artifact.path.joinpath("model.json").is_file()
    assert "eval_dpo" in results


def test_aft_stage_end_to_end(root: Path):
    step = "stage.steps.demonstrations"
    results = run_stage(
        root,
        "stage=aft",
        PEAKED,
        f"{step}.max_question_words=1000",  # free text: random words, unbounded
        f"{step}.max_answer_words=1000",
        f"~{step}.question_types.scenario",
    )
    demos = results["demonstrations"]
    rows = list(load_dataset(demos.artifact))
    assert rows and demos.metrics["rows"] == len(rows)
    assert demos.metrics["filter/asked"] >= len(rows)  # the filter judged each kept answer
    threshold = 0.35  # conf/sizes/smollm2_135m/aft.yaml, which tiny_random reuses
    assert all(r["filter_score"] >= threshold for r in rows)
    assert demos.metrics.get("dropped/off_spec", 0) > 0  # the filter kept some, not all
    assert results["sft"].artifact.path.joinpath("model.json").is_file()
    assert "eval_sft" in results
