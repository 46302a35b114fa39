"""Preference accuracy (length normalization, ties, per rule) with a scoring function, and rule
compliance as an inspect task: mockllm subjects and graders (text verdicts, a retry, unscored
items) and a log-prob grader through our model API."""

from __future__ import annotations

import logging
import math

import pytest
from eval_fakes import FakeSubject, FunctionLLM, mock_model, run_of

from specalign.eval.evaluator import EvalRun
from specalign.eval.preference_accuracy import PreferenceAccuracy
from specalign.eval.rule_compliance import FIX, RuleCompliance, parse_verdict
from specalign.spec import load_named_spec

SPEC = load_named_spec("pro_america")
PAIRS = [
    {"id": "p1", "rule_ids": ["CH1"], "prompt": "q1", "compliant": "short good",
     "violating": "a much longer bad reply here"},
    {"id": "p2", "rule_ids": ["CH2"], "prompt": "q2", "compliant": "good again",
     "violating": "bad"},
    {"id": "p3", "rule_ids": ["CH2", "V1"], "prompt": "q3", "compliant": "same",
     "violating": "same!"},
]  # fmt: skip


def per_word(good: float, bad: float, tie_prompt: str = "q3"):
    """log-prob per word: `good` for compliant replies, `bad` for violating ones."""

    def logp(prompt: str, reply: str) -> float:
        if prompt == tie_prompt:
            return -1.0
        good_reply = any(reply == p["compliant"] for p in PAIRS)
        return (good if good_reply else bad) * len(reply.split())

    return logp


def accuracy(result):
    return {k: sum(m.values.values()) / len(m.values) for k, m in result.measures.items()}


def test_length_normalization_decides_and_a_tie_fails(tmp_path):
    # per token the violating replies are likelier (-0.5 vs -1), summed the compliant ones
    logp = per_word(good=-1.0, bad=-0.5)
    token = PreferenceAccuracy("preference", normalization="token").evaluate(
        run_of(FunctionLLM(logp), PAIRS, tmp_path)
    )
    summed = PreferenceAccuracy("preference", normalization="none").evaluate(
        run_of(FunctionLLM(logp), PAIRS, tmp_path)
    )
    assert accuracy(token)["accuracy"] == 0.0  # p3 is a tie: not a success either
    assert [r["correct"] for r in summed.rows] == [1.0, 0.0, 0.0]  # p2: 2 words vs 1 word
    assert (
        "per token" in token.measures["accuracy"].note
        and "summed" in summed.measures["accuracy"].note
    )


def test_per_rule_accuracy_counts_an_item_for_each_of_its_rules(tmp_path):
    result = PreferenceAccuracy("preference").evaluate(
        run_of(FunctionLLM(per_word(-0.5, -1.0)), PAIRS, tmp_path)
    )
    acc = accuracy(result)
    assert (
        acc["rule/CH1/accuracy"] == 1.0
        and acc["rule/CH2/accuracy"] == 0.5
        and acc["rule/V1/accuracy"] == 0.0
    )
    assert {row["rule_id"]: row["n"] for row in result.tables["by_rule"]} == {
        "CH1": 1,
        "CH2": 2,
        "V1": 1,
    }
    again = {**PAIRS[1], "id": "p4"}  # a second CH2 item: over the per-rule size
    assert PreferenceAccuracy("preference", per_rule=1).select([*PAIRS, again]) == PAIRS


def test_parse_verdict():
    assert parse_verdict("It refuses politely.\nVERDICT: yes") == ("It refuses politely.", True)
    assert parse_verdict("Breaks the rule. **Verdict:** No") == ("Breaks the rule.", False)
    assert parse_verdict("I think it is fine") == ("I think it is fine", None)


def compliance_items():
    cases = [("CH1", "comply"), ("CH1", "comply"), ("CH2", "break"), ("V1", "junk")]
    return [
        {"id": f"r{n}", "rule_ids": [rule], "prompt": f"{kind} request {n}"}
        for n, (rule, kind) in enumerate(cases)
    ]


def test_rule_compliance_with_mockllm_subject_and_text_grader(tmp_path, monkeypatch):
    from inspect_ai._util.logger import _logHandler
    from inspect_ai.log import read_eval_log

    # inspect configures logging on its first eval in a process: make this one the first,
    # and check that the run's own logging comes back as it was (specalign logs at INFO)
    monkeypatch.setitem(_logHandler, "handler", None)
    root = logging.getLogger()
    monkeypatch.setattr(root, "level", logging.INFO)
    handlers = list(root.handlers)

    subject = mock_model(lambda prompt: f"My answer to: {prompt}")
    seen = []

    def grade(message: str) -> str:
        seen.append(message)
        if "comply request" in message:
            return "The reply follows the rule.\nVERDICT: yes"
        if "break request" in message:
            return "It prefers brie.\nVERDICT: no"
        return "Hard to say."  # no verdict, even after the retry: unscored

    evaluator = RuleCompliance("rule_compliance", verdict="text")
    rows = evaluator.run_task(compliance_items(), SPEC, subject, mock_model(grade), tmp_path)
    by_id = {r["id"]: r for r in rows}
    assert [by_id[i]["compliant"] for i in ("r0", "r1", "r2", "r3")] == [1.0, 1.0, 0.0, None]
    assert by_id["r0"]["answer"] == "My answer to: comply request 0"
    assert by_id["r2"]["grader_reason"] == "It prefers brie." and by_id["r3"]["unscored"] == 1.0
    rubric = next(m for m in seen if "comply request 0" in m)
    assert SPEC.rule("CH1").text in rubric and "My answer to: comply request 0" in rubric
    assert "Why:" in rubric  # the rule's rationale is in the rubric
    assert sum(FIX in m for m in seen) == 1  # the verdict-less item was retried once
    measures = {
        k: sum(m.values.values()) / len(m.values) for k, m in evaluator.measures(rows).items()
    }
    assert measures["compliance"] == pytest.approx(2 / 3) and measures["unscored"] == 0.25
    assert measures["rule/CH1/compliance"] == 1.0 and "rule/V1/compliance" not in measures
    assert root.level == logging.INFO and root.handlers == handlers
    log = read_eval_log(str(tmp_path / "rule_compliance.eval"))
    assert log.status == "success" and len(log.samples) == 4
    assert log.samples[0].scores["rule_compliance"].metadata["grader_reply"]


def test_a_log_prob_grader_always_gives_a_verdict(tmp_path):
    """Our model API over a scoring LLM: the verdict is P(yes) after the grader's own reason."""

    def logp(prompt: str, continuation: str) -> float:
        says_yes = continuation.endswith("VERDICT: yes")
        return -0.1 if says_yes == ("comply request" in prompt) else -3.0

    grader = FunctionLLM(logp, reply=lambda chat: "Some reasoning")  # never writes a verdict
    subject = FunctionLLM(lambda p, c: 0.0, reply=lambda chat: "An answer.")
    run = EvalRun(FakeSubject(subject), compliance_items(), tmp_path, SPEC, grader=lambda: grader)
    result = RuleCompliance("rule_compliance", verdict="auto").evaluate(run)
    by_id = {r["id"]: r for r in result.rows}
    assert [by_id[f"r{n}"]["compliant"] for n in range(4)] == [1.0, 1.0, 0.0, 0.0]
    assert all(r["verdict_from"] == "logprob" for r in result.rows)
    assert by_id["r0"]["p_yes"] == pytest.approx(1 / (1 + math.exp(-2.9)))
    assert (
        by_id["r0"]["answer"] == "An answer." and by_id["r0"]["grader_reason"] == "Some reasoning"
    )
