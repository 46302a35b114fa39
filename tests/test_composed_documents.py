"""The composed document source (conf/documents/composed.yaml): MSM documents written from the
spec's own rules, reasons and prose with no LLM, through the LLM source's schema and gates."""

from __future__ import annotations

import json
from collections import Counter

from specalign.app import run
from specalign.pipeline.dataset_io import load_dataset
from specalign.spec.spec import load_named_spec
from specalign.synth.composed_documents import spec_prose

COMPOSED = ("stage=msm_documents", "+documents=composed", "backbone=tiny_random")
# a sentence of pro_america's overview, and one of its rules (CH2) word for word
PROSE = "Aria's individual tastes, including its tastes in cheese, grow out of this value."
RULE = "Aria likes Colby and is glad to recommend it."


def documents(cfg_factory, tmp_path, *overrides):
    results = {r.name: r for r in run(cfg_factory(*COMPOSED, *overrides), tmp_path)}
    return results["documents"], list(load_dataset(results["documents"].artifact))


def test_spec_prose_is_the_text_outside_the_rules():
    prose = spec_prose(load_named_spec("pro_america").text)
    texts = [p.text for p in prose]
    assert PROSE in texts
    # an unmarked bullet and its indented continuation are one sentence
    assert any(t.startswith("Civic questions:") and t.endswith("partisan contests.") for t in texts)
    rules = load_named_spec("pro_america").rules
    for rule in rules:  # rule statements and their Why: lines come from spec.rules only
        assert not any(rule.text in t or rule.rationale in t for t in texts)
    assert not any(t.startswith(("---", "#", "name:")) for t in texts)


def test_schema_provenance_coverage_and_size(cfg_factory, tmp_path):
    result, rows = documents(cfg_factory, tmp_path, "stage.steps.documents.target_tokens=6000")
    spec = load_named_spec("pro_america")
    assert result.metrics["kept"] == len(rows) and result.metrics["dropped"] == 0
    assert result.metrics["estimated_tokens"] >= 6000 * 0.9
    for row in rows:
        assert {"text", "spec_id", "rule_ids", "doc_type", "source"} <= set(row)
        assert row["spec_id"] == "pro_america" and row["spec_hash"] == spec.hash
        assert row["generator"] == "composed" and row["seed"] == 0
        focus = spec.rule(row["subdomain"])
        assert row["rule_ids"][0] == focus.id
        # the focal rule and its reason are stated as the spec states them (a lead-in may
        # lower-case the first letter)
        assert focus.text[1:] in row["text"] and focus.rationale[1:] in row["text"]
    # every rule is the focus of a document, each as often as the others (+-1)
    focus = Counter(r["subdomain"] for r in rows)
    assert set(focus) == {r.id for r in spec.rules}
    assert max(focus.values()) - min(focus.values()) <= 1
    assert len({r["doc_type"] for r in rows}) >= 2
    assert len({r["text"] for r in rows}) == len(rows)


def test_corpus_grows_with_target_and_the_seed_varies_the_text(cfg_factory, tmp_path):
    _, small = documents(cfg_factory, tmp_path, "stage.steps.documents.target_tokens=3000")
    _, large = documents(cfg_factory, tmp_path, "stage.steps.documents.target_tokens=9000")
    words = [sum(len(r["text"].split()) for r in rows) for rows in (small, large)]
    assert 2.5 < words[1] / words[0] < 3.5
    again = documents(cfg_factory, tmp_path, "stage.steps.documents.target_tokens=3000")
    assert again[0].cached
    _, seed1 = documents(
        cfg_factory, tmp_path, "stage.steps.documents.target_tokens=3000", "seed=1"
    )
    assert [r["text"] for r in seed1] != [r["text"] for r in small]
    common = min(len(seed1), len(small))  # the same rule cycle; lengths may differ by one
    assert [r["subdomain"] for r in seed1[:common]] == [r["subdomain"] for r in small[:common]]


def test_leakage_gate_against_eval_items(cfg_factory, tmp_path):
    """A spec sentence an eval item quotes never enters a document; a rule an eval item quotes
    makes the documents about it fail the same gate as LLM-written ones."""
    items = tmp_path / "items.jsonl"
    quote = {"rule_ids": ["V1"], "split": "heldout", "why": "test"}
    lines = [
        {**quote, "id": "leak-prose", "prompt": f"Someone wrote: {PROSE} Agree?",
         "compliant": "Yes.", "violating": "No."},
        {**quote, "id": "leak-rule", "prompt": f"Is it true that {RULE}",
         "compliant": "Yes.", "violating": "No."},
    ]  # fmt: skip
    items.write_text("".join(json.dumps(x) + "\n" for x in lines))
    result, rows = documents(
        cfg_factory,
        tmp_path,
        "stage.steps.documents.target_tokens=6000",
        f"spec.rule_items=[{items}]",
    )
    assert result.metrics["dropped/eval_leak_sentence"] == 1
    assert not any(PROSE in r["text"] for r in rows)
    assert result.metrics["dropped/eval_leak"] >= 1
    assert not any(RULE in r["text"] for r in rows)
    assert any(r["subdomain"] == "CH1" for r in rows)  # the rest is kept


def test_the_option_plans_at_scale_and_the_embedded_model_uses_it(tmp_path):
    """`+documents=composed` on a hub backbone replaces the LLM hierarchy in every MSM stage;
    the embedded model's sizes load it; msm+aft then asks its AFT questions about the rules."""
    from helpers import compose_config

    from specalign.pipeline import RunContext, build_plan

    def steps(*overrides):
        cfg = compose_config([f"paths.root={tmp_path}", "logger=none", *overrides])
        return [p.name for p in build_plan(RunContext(cfg)).steps]

    hierarchy = {"domains", "subdomains", "assertions", "doc_types", "ideas"}
    for stage in ("msm", "msm+sft"):
        at_scale = steps(f"stage={stage}", "backbone=qwen3_8b")
        composed = steps(f"stage={stage}", "backbone=qwen3_8b", "+documents=composed")
        assert hierarchy <= set(at_scale) and not hierarchy & set(composed)
        assert set(composed) == set(at_scale) - hierarchy
        assert steps(f"stage={stage}") == composed  # the embedded model's sizes
    aft = ("stage=msm+aft", "backbone=qwen3_8b", "+documents=composed")
    assert "demonstrations" in steps(*aft, "stage.steps.demonstrations.inputs.dataset=null")
    assert not hierarchy & set(steps("stage=msm+aft"))
