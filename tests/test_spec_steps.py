"""The spec steps in the stage graph: annotations and instances as cached datasets."""

from __future__ import annotations

import json

import pytest

from specalign.app import run
from specalign.errors import ConfigError, StepNotImplementedError
from specalign.pipeline import RunContext, build_plan


def test_instances_stage_writes_annotations_and_instances(cfg_factory, tmp_path):
    results = {
        r.name: r
        for r in run(cfg_factory("stage=instances", "stage.steps.instances.count=8"), tmp_path)
    }
    annotations = results["annotations"]
    assert annotations.metrics["rules"] == 17  # V1-V5 and CH1-CH12
    assert annotations.metrics["do"] > 0 and annotations.metrics["dont"] > 0
    rows = [
        json.loads(line)
        for line in (annotations.artifact.path / "preview.jsonl").read_text().splitlines()
    ]
    assert {row["id"] for row in rows} >= {"CH1", "CH12", "V1"}
    assert all(row["spec_hash"] and row["rationale"] for row in rows)

    instances = results["instances"]
    assert instances.metrics["instances"] == 8
    assert instances.metrics["max_do_dont_gap"] <= 1
    sample = json.loads((instances.artifact.path / "preview.jsonl").read_text().splitlines()[0])
    assert 8 <= sample["size"] <= 13 and sample["instance_id"].startswith("pro_america-")
    assert set(sample["rule_ids"]) <= {row["id"] for row in rows}


def test_annotation_key_follows_spec_and_annotator_not_the_rest(cfg_factory):
    def key(*overrides: str) -> str:
        plan = build_plan(RunContext(cfg_factory("stage=instances", *overrides)))
        return plan["annotations"].key

    base = key()
    assert key("backbone=tiny_random", "trainer=full") == base
    assert key("spec=pro_affordability") != base  # same rules, other rationales: other hash


def test_llm_annotator_with_unknown_backend_fails_at_plan_time(cfg_factory):
    overrides = ("stage=instances", "annotator=llm", "synthesizer._target_=specalign.llm.no.Such")
    with pytest.raises(StepNotImplementedError, match="annotator=llm: not implemented yet"):
        build_plan(RunContext(cfg_factory(*overrides)))


def test_spec_diff_step_matches_the_harm_policy_shift(cfg_factory, tmp_path):
    cfg = cfg_factory("stage=spec_diff_only", "spec=harm_policy_v2")
    (result,) = run(cfg, tmp_path)
    # the intended v1 -> v2 shift, written down when the two documents were authored
    assert result.metrics == {"added": 5, "removed": 1, "changed": 9, "unchanged": 10}
    diff = json.loads((result.artifact.path / "diff.json").read_text())
    assert set(diff["added"]) == {"G4", "P1", "P2", "P3", "P4"}
    assert diff["removed"] == ["G3"]
    assert "H-LOCKS" in {change["id"] for change in diff["changed"]}


def test_spec_diff_needs_a_previous_version(cfg_factory):
    with pytest.raises(ConfigError, match="needs `previous:"):
        build_plan(RunContext(cfg_factory("stage=spec_diff_only", "spec=general")))


def test_spec_hash_flows_into_downstream_manifests_and_wandb_table(cfg_factory, tmp_path):
    cfg = cfg_factory("stage=instances", "logger=wandb", "stage.steps.instances.count=4")
    results = {r.name: r for r in run(cfg, tmp_path)}
    spec_hash = RunContext(cfg).spec.hash
    for name in ("annotations", "instances"):  # instances inherit it through their input
        assert results[name].artifact.manifest["spec_hashes"] == [spec_hash]
    tables = list((tmp_path / "wandb").rglob("media/table/rules_*.table.json"))
    assert tables, "the rules and their annotations were not logged as a W&B table"
    table = json.loads(tables[0].read_text())
    assert "direction" in table["columns"] and len(table["data"]) == 17
