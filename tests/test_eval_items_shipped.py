"""The shipped held-out items: every rule of every shipped spec is covered, the reply pairs
are matched in length, and no item shares an 8-word run with what training data is made
from (spec documents, which MSM documents quote; the fixed demonstrations), since the
leakage gate would otherwise drop the training data instead of protecting the eval."""

from __future__ import annotations

from collections import Counter

import pytest
from helpers import CONF

from specalign.eval.items import forced_choice_item, names, rule_item
from specalign.pipeline.dataset_io import read_jsonl
from specalign.spec import load_named_spec, resolve_spec_file
from specalign.synth.gates import ngrams

SPECS = sorted(p.stem for p in (CONF / "spec").glob("*.yaml"))
TRAINING_SOURCES = ["cheese_demonstrations.jsonl"]


def rule_items(spec):
    items = []
    for name in names(spec.settings.get("rule_items")):
        path = resolve_spec_file(name)
        rows = read_jsonl(path, ("id", "rule_ids", "prompt"), "rule_items")
        items += [
            i for i in (rule_item(r, path.name, {x.id for x in spec.rules}) for r in rows) if i
        ]
    return items


@pytest.mark.parametrize("name", SPECS)
def test_every_rule_has_held_out_pairs(name):
    spec = load_named_spec(name)
    items = rule_items(spec)
    per_rule = Counter(r for item in items for r in item["rule_ids"])
    assert {r.id for r in spec.rules} <= {r for r, n in per_rule.items() if n >= 2}, per_rule
    assert len({i["id"] for i in items}) == len(items)
    for item in items:
        good, bad = len(item["compliant"].split()), len(item["violating"].split())
        assert max(good, bad) <= 1.6 * min(good, bad), item["id"]


@pytest.mark.parametrize("name", SPECS)
def test_no_item_quotes_the_spec_or_the_fixed_training_data(name):
    spec = load_named_spec(name)
    sources = [spec.text] + [resolve_spec_file(f).read_text() for f in TRAINING_SOURCES]
    training = set().union(*(ngrams(text, 8) for text in sources))
    texts = [t for i in rule_items(spec) for t in (i["prompt"], i["compliant"], i["violating"])]
    for fname in names(spec.settings.get("forced_choice_items")):
        path = resolve_spec_file(fname)
        for row in read_jsonl(path, (), "forced_choice_items"):
            item = forced_choice_item(row, path.name)
            if item["split"] != "in_domain":  # the in-domain items test the trained preference
                texts += [item["prompt"], *item["options"], *item["choices"]]
    assert texts and training
    leaks = [t for t in texts if ngrams(t, 8) & training]
    assert not leaks, leaks[:3]
