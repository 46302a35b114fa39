"""The CI and shift math of the evaluator contract, on numbers worked out by hand."""

from __future__ import annotations

import math

import pytest

from specalign.eval.records import Measure, record_of, records_of, shifts_of
from specalign.eval.stats import bootstrap_mean, paired_shift, wilson


def test_wilson_matches_the_closed_form():
    # 8 of 10, z = 1.96: centre (0.8 + 0.1921) / 1.3841 = 0.7167, half-width 0.2264
    low, high = wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)  # not symmetric
    assert wilson(0, 0) == (0.0, 1.0)


def test_bootstrap_interval_brackets_the_mean_and_is_deterministic():
    values = [0.1, 0.4, 0.35, 0.8, 0.9, 0.2, 0.55, 0.6]
    low, high = bootstrap_mean(values)
    mean = sum(values) / len(values)
    assert low < mean < high and (low, high) == bootstrap_mean(values)
    # a normal approximation gives about mean +- 1.96 * sd / sqrt(n) = +- 0.17
    assert 0.1 < high - low < 0.45
    assert bootstrap_mean([0.3]) == (0.3, 0.3)


def test_paired_shift_cancels_item_difficulty():
    """Items vary a lot, but every item moves by exactly +0.05: the paired interval is that
    point, where an unpaired interval (trained CI minus base CI) would span about +-0.5."""
    base = [0.05, 0.9, 0.3, 0.7, 0.1, 0.5, 0.85, 0.2]
    trained = [b + 0.05 for b in base]
    shift, low, high = paired_shift(base, trained)
    assert (
        shift == pytest.approx(0.05) and low == pytest.approx(0.05) and high == pytest.approx(0.05)
    )
    noisy = [b + d for b, d in zip(base, [0.1, 0.0, 0.1, 0.0, 0.1, 0.0, 0.1, 0.0], strict=True)]
    shift, low, high = paired_shift(base, noisy)
    assert shift == pytest.approx(0.05) and low < 0.05 < high and high - low < 0.1


def test_records_pick_wilson_for_rates_and_bootstrap_for_means():
    rate = record_of("e", "accuracy", Measure({"a": 1.0, "b": 0.0, "c": 1.0, "d": 1.0}))
    assert (rate.value, rate.n, rate.ci) == (0.75, 4, "wilson")
    assert (rate.ci_low, rate.ci_high) == pytest.approx(wilson(3, 4))
    mean = record_of("e", "margin", Measure({"a": 0.5, "b": -0.25}, note="per token"))
    assert (
        mean.ci == "bootstrap" and mean.value == pytest.approx(0.125) and mean.note == "per token"
    )
    assert set(rate.to_dict()) >= {
        "evaluator", "metric", "value", "n", "ci_low", "ci_high", "higher_is_better"
    }  # fmt: skip
    assert records_of("e", {"empty": Measure({})}) == []


def test_shifts_pair_items_by_id_and_ignore_unmatched_ones():
    base = {"m": Measure({"a": 0.0, "b": 1.0, "gone": 1.0})}
    trained = {"m": Measure({"b": 1.0, "a": 1.0, "new": 0.0}), "only_trained": Measure({"a": 1})}
    (shift,) = shifts_of("e", base, trained)
    assert (shift.metric, shift.n, shift.base, shift.trained) == ("m", 2, 0.5, 1.0)
    assert shift.shift == pytest.approx(0.5)
    assert not math.isnan(shift.ci_low) and shift.ci_low <= shift.shift <= shift.ci_high
