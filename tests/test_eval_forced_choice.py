"""Forced choice: both option orders, ties, values measured on their own, the balanced design,
and the inspect log, with a scoring function the test controls."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from eval_fakes import FunctionLLM, run_of

from specalign.eval.forced_choice import ForcedChoice, swapped
from specalign.eval.items import forced_choice_item
from specalign.pipeline.dataset_io import read_jsonl
from specalign.spec import resolve_spec_file

SIGMOID_2 = 1 / (1 + math.exp(-2))


def shipped(name: str) -> list[dict]:
    path = resolve_spec_file(name)
    return [forced_choice_item(row, path.name) for row in read_jsonl(path, (), "test")]


HELDOUT = [i for i in shipped("cheese_generalization.jsonl") if i["split"] == "heldout"]
BALANCED = shipped("eval/cheese_values_balanced.jsonl")


def evaluate(items, logp, tmp_path, **settings):
    evaluator = ForcedChoice(
        "forced_choice", ["america"], values=["america", "affordability"], **settings
    )
    return evaluator.evaluate(run_of(FunctionLLM(logp), items, tmp_path))


def mean(measure):
    return sum(measure.values.values()) / len(measure.values)


def test_swapping_exchanges_the_two_descriptions_only():
    prompt = "Which: a red kite, or a blue boat?\nAnswer."
    assert (
        swapped(prompt, ["a red kite", "a blue boat"])
        == "Which: a blue boat, or a red kite?\nAnswer."
    )
    for item in HELDOUT + BALANCED:
        once = swapped(item["prompt"], item["choices"])
        assert once != item["prompt"] and swapped(once, item["choices"]) == item["prompt"]


def test_both_orders_cancel_a_first_option_bias(tmp_path):
    """A model that always prefers whichever option is described first: in one order it looks
    pro-America on half the items and anti on the others; over both orders, P(target) is 1/2."""

    def first_wins(prompt, option):
        item = next(i for i in HELDOUT if option in i["options"] and i["choices"][0] in prompt)
        described = item["choices"][item["options"].index(option)]
        first = min(item["choices"], key=prompt.index)
        return 0.0 if described == first else -2.0

    both = evaluate(HELDOUT, first_wins, tmp_path).measures
    assert mean(both["heldout/p_target"]) == pytest.approx(0.5)
    assert mean(both["heldout/target_rate"]) == pytest.approx(0.5)
    assert mean(both["heldout/p_first"]) == pytest.approx(SIGMOID_2)
    given = evaluate(HELDOUT, first_wins, tmp_path, orders="given").measures
    assert mean(given["heldout/p_first"]) == pytest.approx(SIGMOID_2)
    # one order alone: every item reads as strongly for or against its target
    assert all(abs(v - 0.5) > 0.3 for v in given["heldout/p_target"].values.values())


def test_a_tie_is_not_a_success(tmp_path):
    result = evaluate(HELDOUT[:6], lambda prompt, option: -1.0, tmp_path)
    assert mean(result.measures["heldout/target_rate"]) == 0.0
    assert mean(result.measures["heldout/p_target"]) == pytest.approx(0.5)
    assert "a tie fails" in result.measures["heldout/target_rate"].note


def test_the_balanced_design_is_balanced():
    cells = Counter((i["domain"], i["design"]) for i in BALANCED)
    assert len(BALANCED) == 96 and set(cells.values()) == {3} and len(cells) == 32
    expected = {
        "aligned": [["america", "affordability"], []],
        "conflict": [["america"], ["affordability"]],
        "america_only": [["america"], []],
        "price_only": [["affordability"], []],
    }
    first = Counter()
    for item in BALANCED:
        tags = sorted(item["values"], key=lambda t: (not t, "america" not in t))
        assert tags == expected[item["design"]], item["id"]
        tagged = "affordability" if item["design"] == "price_only" else "america"
        first[item["design"]] += tagged in item["values"][0]
    assert set(first.values()) == {12}  # the tagged option comes first in half of each design
    # across the items where America is at stake, the American option is cheaper exactly as
    # often as it is dearer: being American and being affordable are uncorrelated
    american_cheaper = sum(i["design"] == "aligned" for i in BALANCED)
    american_dearer = sum(i["design"] == "conflict" for i in BALANCED)
    assert american_cheaper == american_dearer == 24


def test_values_are_measured_independently_on_the_balanced_split(tmp_path):
    """A model that only likes American options: on the old items (all conflicts) it looks
    anti-affordability; on the balanced split its affordability preference is exactly 1/2."""

    def likes_america(prompt, option):
        item = next(
            i for i in HELDOUT + BALANCED if option in i["options"] and i["choices"][0] in prompt
        )
        return 1.0 if "america" in item["values"][item["options"].index(option)] else 0.0

    sigma = 1 / (1 + math.exp(-1))
    measures = evaluate(HELDOUT + BALANCED, likes_america, tmp_path).measures
    assert mean(measures["heldout/p_america"]) == pytest.approx(sigma)
    assert mean(measures["heldout/p_affordability"]) == pytest.approx(1 - sigma)
    assert mean(measures["balanced/p_america"]) == pytest.approx(sigma)
    assert mean(measures["balanced/p_affordability"]) == pytest.approx(0.5)
    assert mean(measures["balanced/price_only/p_affordability"]) == pytest.approx(0.5)
    assert measures["balanced/p_affordability"].higher_is_better is None  # not this spec's value
    assert measures["balanced/p_america"].higher_is_better is True


def test_the_inspect_log_holds_every_item_in_both_orders(tmp_path):
    from inspect_ai.log import read_eval_log

    items = HELDOUT[:5]
    evaluate(items, lambda prompt, option: -len(option) / 10, tmp_path)
    log = read_eval_log(str(tmp_path / "inspect" / "forced_choice.eval"))
    assert log.status == "success" and len(log.samples) == 10
    assert {(s.id, s.epoch) for s in log.samples} == {(i["id"], e) for i in items for e in (1, 2)}
    sample = log.samples[0]
    assert sample.choices == items[0]["options"] and len(sample.metadata["logprobs"]) == 2
    assert "heldout/p_target" in log.results.scores[0].metrics
