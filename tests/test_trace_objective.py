"""TRACE's pieces without a model: the loss terms against hand computations, how each
variant turns triaged pairs into training rows, the gold batch, and the weights."""

from __future__ import annotations

import math

import pytest
import torch

from specalign.errors import ConfigError
from specalign.trace.impact import gold_batch, normalized_weights
from specalign.trace.labels import label_of
from specalign.trace.objective import dpo_loss, npo_loss, row_losses, token_kl
from specalign.trace.variants import training_rows

BETA, ALPHA = 0.3, 0.1


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_each_term_matches_its_formula():
    c, r, rc, rr = 3.0, -1.0, 1.0, 0.5
    expected = -log_sigmoid(BETA * ((c - rc) - (r - rr)))
    got = dpo_loss(*(torch.tensor([v]) for v in (c, r, rc, rr)), BETA)
    assert float(got) == pytest.approx(expected, rel=1e-6)
    # NPO: (2 / beta) * log(1 + (pi / pi_ref)^beta), the ratio from log-probs
    expected = (2 / BETA) * math.log(1 + math.exp(c - rc) ** BETA)
    assert float(npo_loss(torch.tensor([c]), torch.tensor([rc]), BETA)) == pytest.approx(expected)
    # token KL(ref || policy), averaged over the completion tokens only
    ref = torch.tensor([[[0.0, 1.0], [2.0, 0.0], [0.0, 0.0]]])
    pol = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [5.0, 0.0]]])
    mask = torch.tensor([[0, 1, 1]])  # positions 1, 2 are completion: logits at 0, 1 predict them

    def kl(p_logits, q_logits):
        p = torch.softmax(p_logits, -1)
        return float((p * (p.log() - torch.log_softmax(q_logits, -1))).sum())

    hand = (kl(ref[0, 0], pol[0, 0]) + kl(ref[0, 1], pol[0, 1])) / 2
    assert float(token_kl(ref, pol, mask)) == pytest.approx(hand, rel=1e-6)


def test_row_losses_weight_each_row_by_its_term():
    chosen, rejected = torch.tensor([-2.0, -3.0, -4.0]), torch.tensor([-5.0, -1.0, -6.0])
    batch = {
        "trace_term": torch.tensor([0, 1, 2]),  # dpo, npo (both down), kl
        "trace_weight": torch.tensor([2.0, 0.5, 9.0]),  # a KL row's weight is not used
        "npo_chosen": torch.tensor([0.0, 1.0, 0.0]),
        "npo_rejected": torch.tensor([0.0, 1.0, 0.0]),
        "ref_chosen_logps": torch.tensor([-2.5, -2.0, -4.0]),
        "ref_rejected_logps": torch.tensor([-4.0, -1.5, -6.0]),
    }
    kl = torch.tensor([0.0, 0.0, 0.7])
    out = row_losses(batch, chosen, rejected, beta=BETA, alpha_kl=ALPHA, kl=kl)["loss"]
    dpo = -log_sigmoid(BETA * ((-2.0 + 2.5) - (-5.0 + 4.0)))
    npo = (
        (2 / BETA) * math.log1p(math.exp(BETA * -1.0))
        + (2 / BETA) * math.log1p(math.exp(BETA * 0.5))
    ) / 2
    assert out.tolist() == pytest.approx([2.0 * dpo, 0.5 * npo, ALPHA * 0.7], rel=1e-6)


def pairs():
    rows = []
    for i, (cv, rv) in enumerate([(True, False)] * 3 + [(True, True)] * 3 + [(False, True)] * 3):
        rows.append(
            {
                "prompt": f"p{i}",
                "chosen": f"c{i}",
                "rejected": f"r{i}",
                "chosen_violates": cv,
                "rejected_violates": rv,
                "triage": label_of(cv, rv),
                "ref_chosen_logps": -float(i),
                "ref_rejected_logps": -10.0 - i,
                "impact_weight": [0.5, 0.25, 0.25, 0.0, 0.0, 0.0, 0, 0, 0][i],
            }
        )
    return rows


VARIANT = {"beta": BETA, "alpha_kl": ALPHA}


def test_variants_train_each_category_as_declared():
    rows = pairs()
    trace = training_rows(
        rows,
        {
            **VARIANT,
            "name": "trace",
            "invert": "dpo_swapped",
            "punish": "npo",
            "retain": "kl",
            "weights": "impact",
        },
    )
    assert [r["trace_term"] for r in trace] == [0] * 3 + [1] * 3 + [2] * 3
    first = trace[0]  # INVERT: swapped, and its reference log-probs with it
    assert (first["chosen"], first["rejected"]) == ("r0", "c0")
    assert (first["ref_chosen_logps"], first["ref_rejected_logps"]) == (-10.0, 0.0)
    # impact weights rescaled to mean 1 over the 6 conflicts; RETAIN rows weigh 1
    assert [r["trace_weight"] for r in trace] == pytest.approx([3.0, 1.5, 1.5, 0, 0, 0, 1, 1, 1])
    assert [(r["npo_chosen"], r["npo_rejected"]) for r in trace[3:6]] == [(1.0, 1.0)] * 3

    naive = training_rows(
        rows,
        {
            **VARIANT,
            "name": "naive",
            "invert": "dpo_as_labelled",
            "punish": "dpo_as_labelled",
            "retain": "dpo_as_labelled",
            "weights": "uniform",
        },
    )
    assert [(r["chosen"], r["trace_term"], r["trace_weight"]) for r in naive] == [
        (f"c{i}", 0, 1.0) for i in range(9)
    ]
    gold = training_rows(
        rows,
        {
            **VARIANT,
            "name": "gold",
            "invert": "dpo_swapped",
            "punish": "none",
            "retain": "dpo_as_labelled",
            "weights": "uniform",
        },
    )
    assert [r["chosen"] for r in gold] == ["r0", "r1", "r2", "c6", "c7", "c8"]
    npo = training_rows(
        rows,
        {
            **VARIANT,
            "name": "npo",
            "invert": "npo",
            "punish": "npo",
            "retain": "none",
            "weights": "uniform",
        },
    )
    # INVERT pushes down only its violating chosen reply
    assert [(r["npo_chosen"], r["npo_rejected"]) for r in npo] == [(1.0, 0.0)] * 3 + [
        (1.0, 1.0)
    ] * 3


def test_a_bad_variant_names_the_key_and_the_choices():
    with pytest.raises(ConfigError, match=r"trace.punish='ipo': choose one of"):
        training_rows(
            pairs(),
            {
                **VARIANT,
                "name": "x",
                "invert": "dpo_swapped",
                "punish": "ipo",
                "retain": "kl",
                "weights": "impact",
            },
        )


def test_gold_batch_is_a_third_retain_a_third_inverted_the_rest_punish():
    rows = pairs() * 4  # 12 of each label
    for i, row in enumerate(rows):
        row = dict(row)
        rows[i] = {**row, "prompt": f"{row['prompt']}-{i}"}
    gold = gold_batch(rows, 9, seed=0)
    assert [g["gold_of"] for g in gold].count("RETAIN") == 3
    assert [g["gold_of"] for g in gold].count("INVERT") == 3
    assert len(gold) == 9 and len({g["prompt"] for g in gold}) == 9  # no pair twice
    compliant = {r["rejected"] for r in rows if not r["rejected_violates"]} | {
        r["chosen"] for r in rows if not r["chosen_violates"]
    }
    for g in gold:
        source = next(r for r in rows if r["prompt"] == g["prompt"])
        if g["gold_of"] == "INVERT":
            assert (g["chosen"], g["rejected"]) == (source["rejected"], source["chosen"])
        elif g["gold_of"] == "PUNISH":
            assert g["chosen"] in compliant and g["rejected"] == source["chosen"]
        else:
            assert (g["chosen"], g["rejected"]) == (source["chosen"], source["rejected"])
    assert gold_batch(rows, 9, seed=0) == gold and gold_batch(rows, 9, seed=1) != gold


def test_weights_are_clamped_and_l1_normalized():
    weights, informative = normalized_weights([2.0, -1.0, 1.0, 1.0])
    assert weights == pytest.approx([0.5, 0.0, 0.25, 0.25]) and informative
    weights, informative = normalized_weights([-1.0, -2.0])
    assert weights == [0.5, 0.5] and not informative
