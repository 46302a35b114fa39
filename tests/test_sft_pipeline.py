"""The first real pipeline, end to end: fixed demonstrations -> TRL SFT with LoRA ->
forced-choice log-prob eval -> metrics.json + W&B, on the tiny random backbone."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from specalign.app import run
from specalign.pipeline.keys import content_key


def test_sft_pipeline_end_to_end_on_tiny_random(cfg_factory, tmp_path, capsys):
    cfg = cfg_factory(
        "stage=sft",
        "backbone=tiny_random",
        "logger=wandb",
        "trainer.args.max_steps=4",
        "trainer.args.save_steps=2",
        "trainer.args.per_device_train_batch_size=4",
    )
    results = {r.name: r for r in run(cfg, tmp_path)}
    assert list(results) == ["eval_items", "eval_base", "demonstrations", "sft", "eval_sft"]
    assert not any(r.cached for r in results.values())

    demos = results["demonstrations"]
    assert demos.metrics["rows"] > 0 and (demos.artifact.path / "preview.jsonl").is_file()

    sft = results["sft"].artifact.path
    info = json.loads((sft / "model.json").read_text())
    assert info == {"format": "adapter", "path": "adapter", "backbone": "tiny_random"}
    weights = load_file(str(sft / "adapter" / "adapter_model.safetensors"))
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and any(w.abs().sum() > 0 for w in lora_b), "LoRA B is still zero: no training"
    assert results["sft"].metrics["steps"] == 4

    for name in ("eval_base", "eval_sft"):
        path = results[name].artifact.path
        records = json.loads((path / "results.json").read_text())["records"]
        heldout = next(r for r in records if r["metric"] == "heldout/p_target")
        assert heldout["n"] == 60 and heldout["ci_low"] <= heldout["value"] <= heldout["ci_high"]
        assert 0.0 <= results[name].metrics["forced_choice/heldout/target_rate"] <= 1.0
        items = (path / "forced_choice_items.jsonl").read_text()
        assert len(items.splitlines()) == 72 + 96  # the original items and the balanced set
    base = results["eval_base"].metrics["forced_choice/heldout/p_target"]
    tuned = results["eval_sft"].metrics["forced_choice/heldout/p_target"]
    assert base != tuned, "the eval of the trained adapter scored exactly like the backbone"
    shift = results["eval_sft"].metrics["forced_choice/heldout/p_target/shift"]
    assert shift == pytest.approx(tuned - base)

    # every evaluator ran on the tiny model and left a log the inspect viewer reads
    from inspect_ai.log import read_eval_log

    evaluation = json.loads((results["eval_sft"].artifact.path / "results.json").read_text())
    names = {r["evaluator"] for r in evaluation["records"]}
    assert names == {"forced_choice", "preference", "rule_compliance", "refusal"}
    assert {s["evaluator"] for s in evaluation["shifts"]} == names and not evaluation["skipped"]
    for name, samples in (
        ("forced_choice", 2 * 168),
        ("preference", 51),
        ("rule_compliance", 17),
        ("refusal", 20),  # 4 per source and expectation (eval=default)
    ):
        log = read_eval_log(str(results["eval_sft"].artifact.path / "inspect" / f"{name}.eval"))
        assert log.status == "success" and len(log.samples) == samples
    by_rule = evaluation["tables"]["rule_compliance/by_rule"]
    assert [row["rule_id"] for row in by_rule][:2] == ["V1", "V2"] and len(by_rule) <= 17

    # W&B offline: one run per computed step, id derived from (experiment, key)
    manifest = json.loads((sft / "manifest.json").read_text())
    expected_id = content_key({"experiment": cfg.name, "key": results["sft"].artifact.key})
    assert manifest["tracker_run_id"] == expected_id
    assert list((tmp_path / "wandb").glob(f"wandb/offline-run-*-{expected_id}"))

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [s["name"] for s in summary["steps"]] == list(results)
    step = next(s for s in summary["steps"] if s["name"] == "eval_sft")
    assert step["evaluation"]["tables"]["preference/by_rule"]  # the per-rule table

    # the run ends with the spec's headline (conf/spec/pro_america.yaml): each value's shift
    printed = capsys.readouterr().out
    headline = printed[printed.index("headline: P(option with the value)") :].splitlines()
    shift = next(
        s for s in evaluation["shifts"] if s["metric"] == "balanced/p_america"
    )  # the row the eval step wrote, printed as it is
    row = next(line.split() for line in headline if "eval_sft" in line and "p_america" in line)
    assert row[1] == "forced_choice/balanced/p_america" and row[5] == f"{shift['shift']:+.3f}"
    assert any("eval_sft" in line and "p_affordability" in line for line in headline)

    again = run(cfg, tmp_path)
    assert all(r.cached for r in again), "an identical re-run must train nothing"


@pytest.mark.slow
def test_embedded_default_pipeline_runs(cfg_factory, tmp_path):
    """The default (`python -m specalign`: MSM documents composed from the spec ->
    midtraining -> SFT on the cheese demonstrations -> evals) on the real SmolLM2, with sizes
    and training capped."""
    results = run(
        cfg_factory(
            "trainer.args.max_steps=2",
            "stage.steps.documents.max_documents=4",
            "eval.evaluators.forced_choice.max_items=4",  # per split: 12 items in 2 orders
            "eval.evaluators.preference.max_items=6",
            "eval.evaluators.rule_compliance.max_items=3",
            "eval.evaluators.rule_compliance.max_tokens=8",
            "eval.evaluators.rule_compliance.grader_max_tokens=8",
            "eval.evaluators.refusal.per_source=1",
            "eval.evaluators.refusal.max_tokens=8",
        ),
        tmp_path,
    )
    by_name = {r.name: r for r in results}
    # the embedded model's documents are composed from the spec (conf/documents/composed.yaml)
    assert list(by_name)[:4] == ["eval_items", "eval_base", "documents", "midtrain"]
    assert by_name["documents"].metrics["rows"] == 4
    assert by_name["sft"].artifact.manifest["inputs"]["model"]["step"] == "midtrain"
    eval_metrics = {r.name: r.metrics for r in results if r.artifact.kind == "metrics"}
    assert set(eval_metrics) == {"eval_base", "eval_midtrain", "eval_sft"}
    for name in (
        "preference/accuracy",
        "rule_compliance/compliance",
        "forced_choice/in_domain/p_target",
        "refusal/over_refusal_rate",
        "refusal/should_refuse_rate",
    ):
        assert name in eval_metrics["eval_base"] and f"{name}/shift" in eval_metrics["eval_sft"]
