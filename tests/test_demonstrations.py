"""AFT demonstration synthesis (specalign/synth/demonstrations.py) on the scripted LLM
(tests/scripted_aft.py): schema, embedding dedup, the LLM filter, reasoning format rejects,
resume after a kill; the fixed cheese demonstrations; and the real plumbing on the tiny
random backbone."""

from __future__ import annotations

import pytest
from helpers import compose_config

from specalign.app import run
from specalign.errors import SpecAlignError
from specalign.llm.cache import RequestCache
from specalign.llm.factory import REQUEST_CACHE
from specalign.pipeline.dataset_io import DATA_DIR, PREVIEW, load_dataset, save_dataset
from specalign.pipeline.step import Artifact
from specalign.synth.demonstrations import parse_reasoned, rule_assertions

SCRIPTED = ("stage=aft_demos", "synthesizer=scripted", "synthesizer.script=scripted_aft.SCRIPT")
STEP = "stage.steps.demonstrations"
RULES = 17  # pro_america's rules: 17 assertions x 2 question types


def demos(cfg_factory, tmp_path, *overrides):
    results = {r.name: r for r in run(cfg_factory(*SCRIPTED, *overrides), tmp_path)}
    result = results["demonstrations"]
    return result.metrics, load_dataset(result.artifact).to_list()


@pytest.mark.parametrize("can_score", [True, False])
def test_schema_and_the_filter_drops_off_spec_answers(cfg_factory, tmp_path, can_score):
    metrics, rows = demos(cfg_factory, tmp_path, f"synthesizer.can_score={can_score}")
    assert metrics["question_requests"] == 2 * RULES
    assert metrics["questions_kept"] == metrics["answers_generated"] == 2 * RULES
    # every scenario answer is off-spec in the script: the filter drops exactly those
    assert metrics["dropped/off_spec"] == RULES and metrics["rows"] == RULES, metrics
    assert metrics["filter/asked"] == 2 * RULES and metrics["filter/rejects"] == 0
    # 34 question + 34 answer requests; the filter scores Yes and No, or generates once
    assert metrics["llm_calls"] == 2 * RULES * (2 + (2 if can_score else 1))
    assert {row["question_type"] for row in rows} == {"direct"}
    assert len({row["assertion_id"] for row in rows}) == RULES  # one direct row per rule
    for row in rows:
        assert [t["role"] for t in row["messages"]] == ["user", "assistant"]
        assert row["messages"] == row["messages_without_reasoning"]
        assert row["messages"][0]["content"] == row["question"]
        assert row["messages"][-1]["content"] == row["answer"]
        assert row["reasoning"] == "" and row["style"] == "value"
        assert row["rule_ids"] == [row["assertion_id"]]
        assert row["filter_score"] > 0.99
        assert row["spec_id"] == "pro_america" and row["seed"] == 0
        assert len(row["spec_hash"]) == 64 and row["generator"]


def test_near_duplicate_questions_are_dropped_and_distinct_ones_kept(cfg_factory, tmp_path):
    metrics, rows = demos(
        cfg_factory, tmp_path, f"{STEP}.questions_per_type=2", f"{STEP}.filter_threshold=0.0"
    )
    assert metrics["questions_generated"] == 4 * RULES
    # each reply is a question and a one-word paraphrase: the paraphrase goes, the first stays
    assert metrics["dropped/question_near_duplicate"] == 2 * RULES
    assert metrics["questions_kept"] == 2 * RULES and metrics["rows"] == 2 * RULES
    assert all(
        row["question"].startswith("Can you") for row in rows if row["question_type"] == "direct"
    )
    assert all(
        row["question"].endswith("Is that true?")
        for row in rows
        if row["question_type"] == "scenario"
    )


def test_malformed_reasoning_is_retried_then_rejected(cfg_factory, tmp_path):
    metrics, rows = demos(cfg_factory, tmp_path, f"{STEP}.reasoning=true", f"{STEP}.style=rule")
    # every first reply is malformed; direct questions are fixed on the retry, scenario not
    assert metrics["retries"] == 2 * RULES
    assert metrics["dropped/answer_reject"] == RULES
    assert metrics["answers_generated"] == RULES and metrics["rows"] == RULES
    for row in rows:
        assert row["style"] == "rule" and row["question_type"] == "direct"
        assert row["reasoning"].startswith("the user asks")
        assert row["messages"][-1]["content"] == (
            f"<think>\n{row['reasoning']}\n</think>\n\n{row['answer']}"
        )
        assert row["messages_without_reasoning"][-1] == {
            "role": "assistant",
            "content": row["answer"],
        }
        assert row["messages_without_reasoning"][0] == row["messages"][0]


def test_parse_reasoned():
    assert parse_reasoned("**Reasoning:** because.\n**Answer:** Yes, I do.", 1, None) == (
        "because.",
        "Yes, I do.",
    )
    for bad in ("Just an answer.", "Answer: yes\nReasoning: no", "Reasoning: x\nAnswer: "):
        with pytest.raises(ValueError):
            parse_reasoned(bad, 1, None)


def test_killed_run_resumes_from_the_request_cache(tmp_path):
    def at(root, *overrides):
        cfg = compose_config([f"paths.root={root}", "logger=none", *SCRIPTED, *overrides])
        result = next(r for r in run(cfg, root) if r.name == "demonstrations")
        return result.metrics, load_dataset(result.artifact).to_list()

    killed, fresh = tmp_path / "killed", tmp_path / "fresh"
    with pytest.raises(RuntimeError, match="killed"):
        at(killed, "synthesizer.fail_after=40")
    answered = len(RequestCache(killed / "cache" / REQUEST_CACHE))
    assert answered == 38  # the 34 question requests and the first chunk of 4 answers
    resumed, rows = at(killed)
    uninterrupted, fresh_rows = at(fresh)
    assert uninterrupted["llm_calls"] - resumed["llm_calls"] == answered
    assert rows == fresh_rows and len(rows) == RULES


def test_assertions_input_and_rule_assertions(cfg_factory, tmp_path):
    from datasets import Dataset

    from specalign.pipeline.context import RunContext
    from specalign.pipeline.plan import build_plan

    ctx = RunContext(cfg_factory(*SCRIPTED), run_dir=None)
    step = build_plan(ctx)["demonstrations"].step
    from_rules = rule_assertions(ctx.spec)
    assert from_rules[0] == {
        "assertion_id": "V1",
        "assertion": ctx.spec.rules[0].text,
        "explanation": ctx.spec.rules[0].rationale,
        "rule_ids": ["V1"],
    }
    assert step.assertions({}) == from_rules
    rows = [{"assertion_id": "a1", "assertion": "x", "explanation": None, "rule_ids": ["V1"]}]
    save_dataset(Dataset.from_list(rows), tmp_path / "good")
    good = Artifact("assertions", "dataset", "k", tmp_path / "good")
    assert step.assertions({"dataset": good})[0]["explanation"] == ""
    save_dataset(Dataset.from_list([{"assertion": "x"}]), tmp_path / "bad")
    bad = Artifact("assertions", "dataset", "k", tmp_path / "bad")
    with pytest.raises(SpecAlignError, match=r"no column\(s\) \['assertion_id'"):
        step.assertions({"dataset": bad})


def test_aft_stage_plans_and_estimates(cfg_factory, tmp_path, capsys):
    assert run(cfg_factory("stage=aft", "dry_run=true"), tmp_path) == []
    assert f"would spend: llm_calls={2 * RULES}" in capsys.readouterr().out


def test_fixed_cheese_demonstrations_are_identical_across_specs(tmp_path):
    """MSM's comparison: both cheese specs fine-tune on byte-identical demonstrations."""
    found = {}
    for spec in ("pro_america", "pro_affordability"):
        cfg = compose_config(
            [
                f"paths.root={tmp_path / spec}",
                "logger=none",
                "stage=sft",
                f"spec={spec}",
                "~stage.steps.sft",
                "~stage.steps.eval_base",
                "~stage.steps.eval_sft",
            ]
        )
        result = next(r for r in run(cfg, tmp_path / spec) if r.name == "demonstrations")
        path = result.artifact.path
        files = sorted((path / DATA_DIR).glob("*.arrow"))
        assert files
        found[spec] = (
            result.artifact.key,
            [f.read_bytes() for f in files],
            (path / PREVIEW).read_bytes(),
        )
    assert found["pro_america"] == found["pro_affordability"]


def test_tiny_random_backbone_junk_is_rejected_and_named(cfg_factory, tmp_path):
    """A random model writes junk: with questions of at least 50 words asked for in 8-token
    replies, every question request is rejected, and the step stops
    naming itself and the counted rejects."""
    overrides = (
        "stage=aft_demos",
        "backbone=tiny_random",
        "synthesizer=local",
        f"{STEP}.sampling.max_new_tokens=8",
        f"{STEP}.min_question_words=50",
        f"{STEP}.max_attempts=1",
        f"~{STEP}.question_types.scenario",
    )
    with pytest.raises(SpecAlignError, match=r"step demonstrations: no questions survived") as err:
        run(cfg_factory(*overrides), tmp_path)
    assert f"'questions_reject': {RULES}" in str(err.value)
    assert len(RequestCache(tmp_path / "cache" / REQUEST_CACHE)) == RULES  # one type, one try
