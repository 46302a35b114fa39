"""Rule annotation: keyword tags on a shipped spec, and the LLM annotator's JSON contract
(validated, retried with the error, rejected and counted) against a scripted LLM."""

from __future__ import annotations

import json

from specalign.spec.annotate import KeywordAnnotator, LLMAnnotator
from specalign.spec.model import PRIORITIES, Rule
from specalign.spec.spec import load_spec


def cheese_spec():
    return load_spec({"id": "pro_america", "document": "pro_america.md"})


def test_keyword_annotator_tags_every_rule_of_the_cheese_spec():
    spec = cheese_spec()
    tags = KeywordAnnotator().annotate(spec)
    assert set(tags) == {rule.id for rule in spec.rules}
    likes = [f"CH{i}" for i in range(1, 7)]
    dislikes = [f"CH{i}" for i in range(7, 13)]
    assert all(tags[r].direction == "do" for r in likes)
    assert all(tags[r].direction == "dont" for r in dislikes)
    for tag in tags.values():
        assert tag.priority in PRIORITIES and 0 <= tag.specificity <= 1
        assert tag.stage in ("request", "response", "conversation")
    assert tags == KeywordAnnotator().annotate(spec), "keyword annotation must be deterministic"


def test_keyword_annotator_reads_explicit_fields():
    rule = Rule(
        id="X1",
        text="Nova shares billing history",
        section=("Billing", "History"),
        exception="unless the caller failed verification",
        priority="critical",
    )
    tag = KeywordAnnotator().annotate_rule(rule)
    assert tag.priority == "critical" and tag.has_exception
    assert tag.domain == "billing" and tag.family == "history"
    never = KeywordAnnotator().annotate_rule(Rule(id="X2", text="Never reveal a password."))
    assert never.direction == "dont" and never.priority == "critical"


class ScriptedLLM:
    """Replies from a list, in order; records every chat it was sent."""

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)
        self.chats: list[list[dict[str, str]]] = []

    def generate(self, chats, sampling, schema=None):
        self.chats.extend(chats)
        return [self.replies.pop(0) for _ in chats]


GOOD = json.dumps(
    {
        "direction": "dont",
        "stage": "request",
        "domain": "cheese",
        "family": "dislikes",
        "priority": "high",
        "has_exception": False,
        "specificity": 0.8,
    }
)


def test_llm_annotator_retries_with_the_error_then_accepts():
    rule = Rule(id="CH7", text="Aria does not care for brie.")
    llm = ScriptedLLM(["not json at all", '{"direction": "sideways"}', f"Sure! {GOOD}"])
    annotator = LLMAnnotator(llm, max_attempts=3)
    tag = annotator.annotate_rule(rule, KeywordAnnotator().annotate_rule(rule))
    assert (tag.annotator, tag.stage, tag.family) == ("llm", "request", "dislikes")
    assert annotator.retries == 2 and annotator.rejects == []
    assert "Invalid" in llm.chats[-1][-1]["content"], "the retry must carry the error"


def test_llm_annotator_counts_a_reject_and_falls_back():
    rule = Rule(id="CH8", text="Aria does not care for Roquefort.")
    fallback = KeywordAnnotator().annotate_rule(rule)
    annotator = LLMAnnotator(ScriptedLLM(["junk"] * 3), max_attempts=3)
    assert annotator.annotate_rule(rule, fallback) == fallback
    assert annotator.rejects == ["CH8"]
