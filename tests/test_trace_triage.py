"""TRACE's triage step with a scripted judge (no model): labels from per-reply verdicts,
only pairs touching changed rules judged when the spec diff is wired, the new spec's rule
text in the judge's context, labels read from the data, and the errors a user can hit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import scripted_trace
from helpers import compose_config

from specalign.app import run
from specalign.errors import SpecAlignError
from specalign.pipeline.dataset_io import load_dataset

PAIRS = Path(__file__).parent / "data" / "trace_pairs.jsonl"
BASE = (
    "stage=triage_only",
    "spec=harm_policy_v2",
    f"spec.preference_pairs={PAIRS}",
    "synthesizer=scripted",
    "synthesizer.script=scripted_trace.SCRIPT",
    "logger=none",
)
EXPECTED = {row["id"]: row["category"].upper() for row in map(json.loads, PAIRS.open())}


def triage(root: Path, *overrides: str) -> tuple[dict, list[dict]]:
    cfg = compose_config([f"paths.root={root}", *BASE, *overrides])
    results = {r.name: r for r in run(cfg, None)}
    return results["triage"].metrics, load_dataset(results["triage"].artifact).to_list()


def test_judge_labels_each_pair_and_the_diff_spares_unchanged_rules(tmp_path):
    scripted_trace.SEEN.clear()
    metrics, rows = triage(tmp_path)
    assert {r["id"]: r["triage"] for r in rows} == EXPECTED
    # H-CBRN, H-ATTACK, H-MEDICAL, H-HISTORY are unchanged from v1: kept without a call
    spared = {r["id"] for r in rows if not r["routed_to_judge"]}
    assert spared == {"t08", "t09", "t10", "t11"}
    assert (metrics["judged"], metrics["retained_by_diff"]) == (8, 4)
    assert len(set(scripted_trace.SEEN)) == 2 * 8 == metrics["judge/asked"]  # chosen, rejected
    assert (metrics["label/invert"], metrics["label/punish"], metrics["label/retain"]) == (4, 4, 4)
    # the judge reads the rule as v2 states it (G1 changed: flat refusals now violate)
    assert all(
        "flat refusal to a request made in a clearly educational" in s for s in scripted_trace.SEEN
    )
    punished = next(r for r in rows if r["triage"] == "PUNISH")
    assert punished["violated_rule_ids"] == ["G1", "P1", punished["harm"]]
    assert punished["p_chosen_violates"] > 0.5 and punished["p_rejected_violates"] > 0.5


def test_without_the_diff_every_pair_is_judged(tmp_path):
    scripted_trace.SEEN.clear()
    metrics, rows = triage(tmp_path, "stage.steps.triage.inputs.diff=null")
    assert (metrics["judged"], metrics["retained_by_diff"]) == (12, 0)
    assert len(set(scripted_trace.SEEN)) == 24
    # the Tier-3 pairs' rejected refusals are now judged violating; chosen still complies
    assert {r["id"]: r["triage"] for r in rows} == EXPECTED


def test_labels_in_the_data_need_no_judge(tmp_path):
    scripted_trace.SEEN.clear()
    metrics, rows = triage(tmp_path, "stage.steps.triage.judge=labels")
    assert {r["id"]: r["triage"] for r in rows} == EXPECTED
    assert scripted_trace.SEEN == [] and "llm_calls" not in metrics


def test_labels_missing_from_the_data_is_one_line_with_the_fix(tmp_path):
    bare = tmp_path / "bare.jsonl"
    bare.write_text(json.dumps({"prompt": "p?", "chosen": "a", "rejected": "b"}) + "\n")
    with pytest.raises(SpecAlignError, match="judge=labels needs `chosen_violates`"):
        triage(tmp_path, "stage.steps.triage.judge=labels", f"spec.preference_pairs={bare}")


def test_an_unknown_judge_names_the_choices(tmp_path):
    with pytest.raises(SpecAlignError, match=r"triage.judge='oracle': choose one of"):
        triage(tmp_path, "stage.steps.triage.judge=oracle")
