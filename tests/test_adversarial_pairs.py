"""SpecAlign's adversarial pair synthesis (specalign/synth/adversarial_pairs.py) with a scripted
LLM (tests/scripted_specalign.py says which exchanges succeed), plus one run of the real
plumbing on the tiny random backbone. The stage is stage=specalign without its training and
eval steps, so the shipped settings of the `pairs` step are the ones under test."""

from __future__ import annotations

import json

import pytest
import scripted_specalign
from helpers import compose_config

from specalign.app import run
from specalign.errors import SpecAlignError
from specalign.pipeline import RunContext, build_plan
from specalign.pipeline.dataset_io import load_dataset
from specalign.synth.experience_pool import ExperiencePool

INSTANCES = 6
SYNTH = (
    "logger=none",
    "stage=specalign",
    "~sizes",  # the stage file's own sizes, not the embedded model's CPU ones
    "~stage.steps.ref_logps",
    "~stage.steps.dpo",
    "~stage.steps.eval_base",
    "~stage.steps.eval_dpo",
    f"stage.steps.instances.count={INSTANCES}",
)
SCRIPTED = ("synthesizer=scripted", "synthesizer.script=scripted_specalign.SCRIPT")


def synthesize(root, *overrides):
    cfg = compose_config([f"paths.root={root}", *SYNTH, *overrides])
    results = {r.name: r for r in run(cfg, root)}
    pairs = results["pairs"]
    return results, pairs.metrics, [dict(r) for r in load_dataset(pairs.artifact)]


def pool_entries(result):
    text = (result.artifact.path / "experience_pool.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def scripted_run(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("pairs"), *SCRIPTED)


def test_pairs_schema_values_and_counts(scripted_run):
    results, metrics, rows = scripted_run
    instances = {r["instance_id"]: r for r in load_dataset(results["instances"].artifact)}
    assert len(instances) == INSTANCES and rows
    assert len({r["pair_id"] for r in rows}) == len(rows)
    for row in rows:
        assert row["prompt"] == [{"role": "user", "content": row["prompt"][0]["content"]}]
        assert [t["role"] for t in row["chosen"] + row["rejected"]] == ["assistant"] * 2
        chosen, rejected = row["chosen"][0]["content"], row["rejected"][0]["content"]
        # chosen is the compliant reply, rejected the defender's violation of >= 1 rule
        assert "VIOLATES" not in chosen and "LAZY" not in chosen
        assert row["rule_ids"] == instances[row["instance_id"]]["rule_ids"]
        assert row["target_rule"] in row["violated_rule_ids"]
        assert set(row["violated_rule_ids"]) <= set(row["rule_ids"])
        assert {r for r in row["rule_ids"] if f"VIOLATES[{r}]" in rejected} == set(
            row["violated_rule_ids"]
        )
        assert row["chosen_compliance"] == 1.0
        n = len(row["rule_ids"])
        assert row["rejected_compliance"] == pytest.approx(1 - len(row["violated_rule_ids"]) / n)
        # log-prob judging: expected rating, ~8/10 and ~6/10
        assert row["chosen_quality"] == pytest.approx(0.8, abs=1e-3)
        assert row["rejected_quality"] == pytest.approx(0.6, abs=1e-3)
        assert row["pair_id"] == f"{row['instance_id']}:r{row['round']}"
        assert row["strategy"].startswith(f"Pressure on {row['target_rule']}")
        assert row["spec_id"] == "pro_america" and row["spec_hash"] and row["seed"] == 0
    assert any(len(r["violated_rule_ids"]) > 1 for r in rows)
    # every exchange is accounted for: attacks = instances x rounds (no planner rejects here)
    assert metrics["rounds"] == 2 and metrics["instances"] == INSTANCES
    assert metrics["attacks"] == 2 * INSTANCES
    assert metrics["successful_attacks"] + metrics["dropped/not_violating"] == metrics["attacks"]
    lost = metrics["dropped/chosen_not_compliant"] + metrics["dropped/low_quality"]
    assert metrics["rows"] + lost == metrics["successful_attacks"]
    assert metrics["attack_success_rate"] == metrics["successful_attacks"] / metrics["attacks"]
    assert 0 < metrics["attack_success_rate"] < 1
    # one compliance question per (reply, rule): every defender reply, every compliant reply
    sizes = {i: len(inst["rule_ids"]) for i, inst in instances.items()}
    successes = pool_entries(results["pairs"])
    asked = 2 * sum(sizes.values()) + sum(sizes[e["instance_id"]] for e in successes)
    assert metrics["compliance_judge/asked"] == asked
    assert metrics["quality_judge/asked"] == 2 * len(successes) - 2 * metrics.get(
        "dropped/chosen_not_compliant", 0
    )
    assert metrics["llm_calls"] > 0 and metrics["pool_size"] == metrics["successful_attacks"]


def test_experience_pool_feeds_later_planners_and_players_swap(scripted_run, tmp_path):
    results, metrics, rows = scripted_run
    pool = pool_entries(results["pairs"])
    assert len(pool) == metrics["successful_attacks"] == metrics["pool_added"]
    assert [e["index"] for e in pool] == list(range(len(pool)))
    # the scripted planner writes what its prompt showed of the pool ("first=X pool=N"):
    # nothing in round 0; in round 1, pool_in_prompt entries, the nearest first
    assert all(r["strategy"].endswith("first=- pool=0") for r in rows if r["round"] == 0)
    round0 = ExperiencePool(size=64)
    for entry in pool:
        if entry["round"] == 0:
            round0.add(**{k: v for k, v in entry.items() if k != "index"})
    instances = {r["instance_id"]: r for r in load_dataset(results["instances"].artifact)}
    later = [r for r in rows if r["round"] == 1]
    assert later
    for row in later:
        inst = instances[row["instance_id"]]
        near = round0.top(
            3, rule_ids=inst["rule_ids"], families=inst["families"], instance_id=inst["instance_id"]
        )
        assert row["strategy"].endswith(f"first={near[0].target_rule} pool={len(near)}")
        assert len(near) == min(3, len(round0))
    roles = {(r["round"], r["attacker"], r["defender"]) for r in rows}
    assert roles == {(0, "A", "B"), (1, "B", "A")}

    # a small pool keeps the newest entries; swap_every=2 keeps roles for two rounds
    _, metrics, rows = synthesize(
        tmp_path,
        *SCRIPTED,
        "stage.steps.pairs.rounds=3",
        "stage.steps.pairs.swap_every=2",
        "stage.steps.pairs.pool_size=2",
        "stage.steps.pairs.pool_in_prompt=5",
    )
    assert metrics["pool_size"] == 2 and metrics["pool_added"] == metrics["successful_attacks"]
    assert all(r["strategy"].endswith(" pool=2") for r in rows if r["round"] > 0)
    assert {(r["round"], r["attacker"]) for r in rows} == {(0, "A"), (1, "A"), (2, "B")}


def test_a_player_with_its_own_synthesizer_plays_its_rounds_with_it(scripted_run, tmp_path):
    """Player A's synthesizer answers planner prompts with junk; B uses the run's. Only the
    rounds A attacks lose plans; the rounds B attacks are whole, as with two equal players."""
    _, reference, _ = scripted_run
    scripted_specalign.JUNK_PLANNER.clear()
    own = "+stage.steps.pairs.players.0.synthesizer={script:scripted_specalign.SCRIPT_BAD_PLANNER}"
    _, metrics, rows = synthesize(tmp_path, *SCRIPTED, own)
    junk = len(scripted_specalign.JUNK_PLANNER)
    assert junk > 0 and metrics["dropped/planner_reject"] == junk
    assert metrics["attacks_round/0"] == INSTANCES - junk  # A attacks in round 0
    assert metrics["attacks_round/1"] == reference["attacks_round/1"] == INSTANCES  # B
    assert {(r["round"], r["attacker"]) for r in rows} <= {(0, "A"), (1, "B")}
    keys = {
        name: build_plan(RunContext(compose_config([f"paths.root={tmp_path}", *SYNTH, *o])))
        for name, o in {
            "same": SCRIPTED,
            "own": (*SCRIPTED, own),
            "own_transport": (*SCRIPTED, own.replace("}", ",max_retries:9}")),
        }.items()
    }
    pair_key = {
        name: next(s.key for s in plan.steps if s.name == "pairs") for name, plan in keys.items()
    }
    assert pair_key["own"] != pair_key["same"]  # who plays is part of the key
    assert pair_key["own_transport"] == pair_key["own"]  # how its requests travel is not


def test_pool_prefers_entries_near_the_instance():
    pool = ExperiencePool(size=3)
    for i, (rule, fams) in enumerate([("X1", ["f"]), ("Y1", ["g"]), ("Z1", ["h"]), ("Y2", ["g"])]):
        pool.add(
            round=0,
            instance_id=f"i{i}",
            families=fams,
            target_rule=rule,
            violated_rule_ids=[rule],
            strategy="s",
            attack="a",
        )
    assert [e.target_rule for e in pool.entries] == ["Y1", "Z1", "Y2"]  # oldest left
    top = pool.top(3, rule_ids=["Z1"], families=["g"], instance_id="new")
    assert [e.target_rule for e in top] == ["Z1", "Y2", "Y1"]  # its rule, family, recency
    assert [e.target_rule for e in pool.top(1, rule_ids=[], families=[], instance_id="n")] == ["Y2"]


def test_malformed_planner_json_is_retried_then_counted(tmp_path):
    scripted_specalign.JUNK_PLANNER.clear()
    _, metrics, rows = synthesize(
        tmp_path, "synthesizer=scripted", "synthesizer.script=scripted_specalign.SCRIPT_BAD_PLANNER"
    )
    junk = len(scripted_specalign.JUNK_PLANNER)
    assert junk > 0 and rows, "the script rejects some planner prompts, not all"
    assert metrics["dropped/planner_reject"] == junk
    assert metrics["retries"] >= 2 * junk  # max_attempts=3: two retries before each reject
    assert metrics["attacks"] == 2 * INSTANCES - junk
    assert all(r["pair_id"] for r in rows)


def test_generate_only_judges_give_the_same_pairs(scripted_run, tmp_path):
    _, reference, expected = scripted_run
    _, metrics, rows = synthesize(tmp_path, *SCRIPTED, "synthesizer.can_score=false")
    assert [r["pair_id"] for r in rows] == [r["pair_id"] for r in expected]
    assert {r["chosen_quality"] for r in rows} == {0.8}  # parsed "8", not an expectation
    assert {r["rejected_quality"] for r in rows} == {0.6}
    assert metrics["compliance_judge/asked"] == reference["compliance_judge/asked"]
    assert metrics["compliance_judge/rejects"] == 0
    assert metrics["llm_calls"] < reference["llm_calls"]  # one generation per question


def test_killed_synthesis_resumes_from_the_request_cache(scripted_run, tmp_path):
    _, reference, expected = scripted_run
    with pytest.raises(RuntimeError, match="killed"):
        synthesize(tmp_path, *SCRIPTED, "synthesizer.fail_after=30")
    assert not list((tmp_path / "store").glob("pairs/*/manifest.json"))
    _, metrics, rows = synthesize(tmp_path, *SCRIPTED)
    assert 0 < metrics["llm_calls"] < reference["llm_calls"]
    assert rows == expected  # identical to an uninterrupted run in a fresh root
    assert len({r["pair_id"] for r in rows}) == len(rows)


def test_unconstrained_junk_is_rejected_and_the_step_says_why(tmp_path):
    """Junk replies from a random model without constrained decoding: the planner JSON never
    parses, every exchange is a counted reject, and the step stops with the reasons instead
    of writing an empty dataset (tests/test_stages_end_to_end.py: the same, constrained)."""
    with pytest.raises(SpecAlignError, match=r"no pairs survived.*'planner_reject': 2"):
        synthesize(
            tmp_path,
            "backbone=tiny_random",
            "synthesizer=local",
            "synthesizer.constrained_decoding=none",
            "stage.steps.instances.count=2",
            "stage.steps.pairs.rounds=1",
            "stage.steps.pairs.max_attempts=2",
            "stage.steps.pairs.sampling.max_new_tokens=8",
        )
