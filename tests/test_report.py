"""The sweep report on a sweep written by hand (no model): arms group the members' eval
artifacts, seeds pool into one arm whose value and shift are the means over seeds x items,
an arm of one run reports its eval step's own records, spec coverage counts what each
training artifact carries per rule, a failed member is named, and bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from specalign.errors import SpecAlignError
from specalign.eval.preference_accuracy import PreferenceAccuracy
from specalign.eval.records import records_of, rule_table, shifts_of
from specalign.eval.stats import bootstrap_mean, crossed_bootstrap_mean
from specalign.report.__main__ import main as report_main
from specalign.report.build import write_report
from specalign.report.coverage import coverage
from specalign.report.members import choices, load_sweep

PREFERENCE = {"_target_": "specalign.eval.preference_accuracy.PreferenceAccuracy"}
SPEC = {"id": "general", "document": "general.md", "model_name": "Aria", "provider": "X"}
ITEMS = [f"i{n}" for n in range(12)]


def rows_with(correct: list[int], rule: str = "G1") -> list[dict]:
    return [
        {"id": i, "rule_ids": [rule], "correct": float(c), "margin": c - 0.5}
        for i, c in zip(ITEMS, correct, strict=True)
    ]


def eval_artifact(
    root: Path, step: str, key: str, rows: list, base: list | None, model: str | None
):
    """An eval step's artifact as EvalStep writes it (results from the same record code)."""
    path = root / "store" / step / key
    path.mkdir(parents=True)
    inputs = {"model": {"step": model, "key": f"m-{key}"}} if model else {}
    (path / "manifest.json").write_text(json.dumps({"kind": "metrics", "inputs": inputs}))
    (path / "preference_items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    evaluator = PreferenceAccuracy("preference")
    measures = evaluator.measures(rows)
    results = {
        "records": [r.to_dict() for r in records_of("preference", measures)],
        "shifts": [s.to_dict() for s in shifts_of("preference", evaluator.measures(base), measures)]
        if base is not None
        else [],
        "skipped": {},
        "tables": {"preference/by_rule": rule_table(measures, "accuracy")},
        "baseline": "base0" if base is not None else None,
    }
    (path / "results.json").write_text(json.dumps(results))
    return path, results


def trained_steps(base: tuple[Path, dict], key: str, trained: tuple[Path, dict], cached: bool):
    """A member's summary steps: the shared base eval (cached after the first member) and its
    own trained eval."""
    return [
        {"name": "eval_base", "key": "base0", "cached": cached, "artifact": str(base[0]),
         "evaluation": base[1]},
        {"name": "eval_sft", "key": key, "cached": False, "artifact": str(trained[0]),
         "evaluation": trained[1]},
    ]  # fmt: skip


def member(
    root: Path, num: int, overrides: list[str], steps: list[dict], contrasts: list | None = None
) -> None:
    directory = root / "multirun" / str(num)
    directory.mkdir(parents=True)
    summary = {
        "experiment": "study",
        "overrides": overrides,
        "spec_config": SPEC,
        "eval": {"evaluators": {"preference": PREFERENCE}},
        "report": {
            "headline": {"title": "t", "metrics": ["preference/accuracy"]},
            "contrasts": contrasts,
        },
        "logger": {"_target_": "specalign.tracking.null_tracker.NullTracker"},
        "steps": steps,
    }
    (directory / "summary.json").write_text(json.dumps(summary))


@pytest.fixture
def sweep_root(tmp_path):
    """Two seeds of one trained arm, both against one base model eval."""
    base_rows = rows_with([1, 0] * 6)
    base = eval_artifact(tmp_path, "eval_base", "base0", base_rows, None, None)
    trained = {0: [1, 1, 1, 0] * 3, 1: [1, 1, 0, 1] * 3}
    for seed, correct in trained.items():
        key = f"sft{seed}"
        evaluated = eval_artifact(tmp_path, "eval_sft", key, rows_with(correct), base_rows, "sft")
        steps = trained_steps(base, key, evaluated, bool(seed))
        member(tmp_path, seed, ["stage=sft", f"seed={seed}", "logger=none"], steps)
    return tmp_path


def test_seeds_pool_into_one_arm_with_means_over_seeds_and_items(sweep_root):
    sweep = load_sweep(sweep_root / "multirun")
    assert sweep.axes == {"seed": ["0", "1"]}
    report = write_report(sweep)
    base, sft = report.arms
    assert base.is_base and base.replicates == 1 and sft.replicates == 2
    accuracy = sft.metrics["preference/accuracy"]
    assert accuracy.stat.value == pytest.approx(0.75)  # (9 + 9) / 24
    assert accuracy.shift.value == pytest.approx(0.25)  # vs the base model's 0.5, per item
    assert accuracy.stat.low < 0.75 < accuracy.stat.high and accuracy.stat.n == 12
    # an arm of one evaluation is exactly its eval step's record
    record = json.loads((sweep_root / "store/eval_base/base0/results.json").read_text())
    expected = next(r for r in record["records"] if r["metric"] == "accuracy")
    got = base.metrics["preference/accuracy"].stat
    assert (got.value, got.low, got.high) == (expected["value"], expected["ci_low"],
                                              expected["ci_high"])  # fmt: skip
    text = report.path.read_text()
    assert "## Headline: t" in text and "sft" in text and "0.750" in text
    assert {"headline", "preference"} <= set(report.figures)
    for path in report.figures.values():
        assert path.is_file() and path.stat().st_size > 1000  # a real PNG
    rows = report.tables["shared_work"]
    base_row = next(r for r in rows if r["step"] == "eval_base")
    assert base_row["members"] == "all" and base_row["computed_by"] == "#0"


def test_a_report_of_one_run(sweep_root, tmp_path):
    report = write_report(load_sweep(sweep_root / "multirun" / "1"), tmp_path / "one")
    assert [a.label for a in report.arms] == ["base", "sft"]
    assert report.arms[1].replicates == 1 and report.sweep.axes == {}
    assert report.arms[1].metrics["preference/accuracy"].stat.value == pytest.approx(0.75)
    assert (tmp_path / "one" / "report.md").is_file()


def test_lineage_names_the_run_and_experiment_that_made_a_reused_step(tmp_path):
    from types import SimpleNamespace

    from specalign.tracking.run_config import lineage, lineage_summary

    made = tmp_path / "a"
    made.mkdir()
    (made / "manifest.json").write_text(
        json.dumps({"experiment": "earlier_study", "tracker_run_id": "run123"})
    )
    artifact = SimpleNamespace(key="k1", manifest=json.loads((made / "manifest.json").read_text()))
    rows = lineage([SimpleNamespace(name="sft", artifact=artifact, cached=True, seconds=0.0)])
    summary = lineage_summary(rows, {"eval_sft/preference/accuracy": 0.5})
    assert summary["lineage/sft/state"] == "reused"
    assert summary["lineage/sft/made_in"] == "earlier_study"
    assert summary["lineage/sft/made_by_run"] == "run123" and summary["lineage/sft/key"] == "k1"
    assert summary["eval_sft/preference/accuracy"] == 0.5


def test_a_failed_member_is_named_and_the_rest_reported(sweep_root, tmp_path):
    failed = sweep_root / "multirun" / "2"
    failed.mkdir()
    (failed / "failed.json").write_text(
        json.dumps({"overrides": ["seed=2"], "error": "spec=x: no such spec"})
    )
    report = write_report(load_sweep(sweep_root / "multirun"))
    members = report.tables["members"]
    assert members[-1]["state"] == "stopped: spec=x: no such spec"
    assert len(report.arms) == 2


def test_the_crossed_bootstrap_covers_seed_spread_and_reduces_to_the_item_bootstrap():
    rng = np.random.default_rng(0)
    items = rng.normal(size=40)
    one = crossed_bootstrap_mean([items])
    assert one[1:] == bootstrap_mean(items)
    tight = crossed_bootstrap_mean([items, items, items])
    spread = crossed_bootstrap_mean([items - 1, items, items + 1])
    assert spread[0] == pytest.approx(tight[0])
    assert spread[2] - spread[1] > 1.5 * (tight[2] - tight[1])


def test_choices_keep_what_a_member_chose_not_where_it_ran():
    got = choices(["spec=a", "+x.y=1", "paths.root=/t", "hydra.job.chdir=true", "logger=none"])
    assert got == {"spec": "a", "x.y": "1"}


def dataset(root: Path, step: str, rows: list[dict]) -> dict:
    path = root / "store" / step / step
    Dataset.from_list(rows).save_to_disk(str(path / "data"))
    (path / "manifest.json").write_text(json.dumps({"kind": "dataset"}))
    return {"name": step, "key": step, "cached": False, "artifact": str(path)}


def test_spec_coverage_counts_each_rules_rows_and_flags_the_gaps(tmp_path):
    documents = [{"text": "t", "rule_ids": ["G1", "G2"]}, {"text": "u", "rule_ids": ["G1"]},
                 {"text": "v", "rule_ids": []}]  # fmt: skip
    pairs = [{"prompt": "p", "chosen": "c", "rejected": "r", "rule_ids": ["G2"]}]
    ref = [{**pairs[0], "ref_chosen_logps": -1.0, "ref_rejected_logps": -2.0}]  # not twice
    items = tmp_path / "store" / "eval_items" / "k"
    items.mkdir(parents=True)
    (items / "manifest.json").write_text(json.dumps({"kind": "eval_items"}))
    (items / "rules.jsonl").write_text(json.dumps({"id": "a", "rule_ids": ["G1"]}) + "\n")
    steps = [
        dataset(tmp_path, "documents", documents),
        dataset(tmp_path, "pairs", pairs),
        dataset(tmp_path, "ref_logps", ref),
        {"name": "eval_items", "key": "k", "cached": False, "artifact": str(items)},
    ]
    member(tmp_path, 0, [], steps)
    found = coverage(load_sweep(tmp_path / "multirun"))["general"]
    rows = {r["rule"]: r for r in found["rows"]}
    assert (rows["G1"]["documents"], rows["G1"]["pairs"], rows["G1"]["eval items"]) == (2, 0, 1)
    assert (rows["G2"]["documents"], rows["G2"]["pairs"], rows["G2"]["eval items"]) == (1, 1, 0)
    assert rows["G1"]["demonstrations"] is None  # no demonstrations in this run at all
    assert "G2" in found["untested"] and "G1" not in found["untested"]
    assert "G3" in found["untaught"] and "G1" not in found["untaught"]
    assert any("1 rows carry no rule id" in note for note in found["notes"])


def test_bad_directories_are_one_line_errors(tmp_path, capsys):
    assert report_main([str(tmp_path / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert report_main([str(tmp_path)]) == 2
    assert "no run found" in capsys.readouterr().err
    (tmp_path / "summary.json").write_text("{not json")
    with pytest.raises(SpecAlignError, match=r"summary\.json: not valid JSON"):
        load_sweep(tmp_path)


def test_the_run_ends_with_its_headline_value_and_shift():
    """report.headline's metrics, per eval step: value [CI] and shift [CI] as the step's
    records and shifts say; a step without a baseline has no shift; other metrics stay out."""
    from specalign.report.eval_table import headline_table

    def record(metric, value, low, high):
        return {"evaluator": "fc", "metric": metric, "value": value, "ci_low": low,
                "ci_high": high, "n": 72}  # fmt: skip

    evaluations = {
        "eval_base": {"records": [record("p_a", 0.346, 0.30, 0.39), record("p_b", 0.5, 0.4, 0.6)]},
        "eval_sft": {
            "records": [record("p_a", 0.4, 0.35, 0.45), record("other", 0.9, 0.8, 1.0)],
            "shifts": [
                {
                    "evaluator": "fc",
                    "metric": "p_a",
                    "shift": 0.054,
                    "ci_low": 0.01,
                    "ci_high": 0.1,
                    "n": 72,
                }
            ],
        },
    }
    lines = headline_table({"title": "T", "metrics": ["fc/p_a", "fc/p_b"]}, evaluations)
    assert lines[0].strip() == "headline: T"
    rows = [line.split() for line in lines[2:]]
    assert rows == [
        ["eval_base", "fc/p_a", "0.346", "[0.300,", "0.390]", "-", "72"],
        ["eval_base", "fc/p_b", "0.500", "[0.400,", "0.600]", "-", "72"],
        ["eval_sft", "fc/p_a", "0.400", "[0.350,", "0.450]", "+0.054", "[+0.010,", "+0.100]", "72"],
    ]
    assert headline_table({"metrics": ["fc/missing"]}, evaluations) == []


def test_contrasts_pair_arms_by_item_and_pool_each_arms_seeds(tmp_path):
    """spec a vs spec b (2 seeds each) on the same items: the difference is the difference of
    the pooled means, paired by item; the SFT-only arm (no spec) pairs with both along stage."""
    base_rows = rows_with([1, 0] * 6)
    base = eval_artifact(tmp_path, "eval_base", "base0", base_rows, None, None)
    correct = {("a", 0): [1, 1, 1, 0] * 3, ("a", 1): [1, 1, 1, 1] * 3,
               ("b", 0): [0, 1, 0, 0] * 3, ("b", 1): [1, 0, 0, 0] * 3,
               ("-", 0): [1, 0, 0, 1] * 3, ("-", 1): [1, 0, 1, 0] * 3}  # fmt: skip
    contrasts = [{"axis": "spec", "a": "a", "b": "b"}, {"axis": "stage", "a": "msm", "b": "sft"}]
    num = 0
    for (spec, seed), values in correct.items():
        key = f"{spec}{seed}"
        evaluated = eval_artifact(tmp_path, "eval_sft", key, rows_with(values), base_rows, "sft")
        steps = trained_steps(base, key, evaluated, bool(num))
        specs = [spec] if spec != "-" else ["a", "b"]  # SFT only: one eval shared by both specs
        for each in specs:
            stage = "sft" if spec == "-" else "msm"
            overrides = [f"spec={each}", f"stage={stage}", f"seed={seed}"]
            member(tmp_path, num, overrides, steps, contrasts)
            num += 1
    report = write_report(load_sweep(tmp_path / "multirun"))
    rows = {r["arm a  -  arm b"]: r for r in report.tables["contrasts"]}
    between = rows["sft | spec=a stage=msm  -  sft | spec=b stage=msm"]
    assert between["difference [95% CI]"].startswith("+0.625 [")  # 21/24 - 6/24
    low = float(between["difference [95% CI]"].split("[")[1].split(",")[0])
    assert low > 0 and between["items"] == 12 and between["seeds (a, b)"] == "2, 2"
    assert set(rows) == {
        "sft | spec=a stage=msm  -  sft | spec=b stage=msm",
        "sft | spec=a stage=msm  -  sft | stage=sft",  # the shared SFT-only arm, along stage
        "sft | spec=b stage=msm  -  sft | stage=sft",
    }
    assert rows["sft | spec=b stage=msm  -  sft | stage=sft"]["difference [95% CI]"].startswith(
        "-0.250"  # 6/24 - 12/24
    )
    assert report.figures["contrasts"].stat().st_size > 1000
    assert "## Contrasts" in report.path.read_text()


def test_the_difference_bootstrap_is_paired_by_item_and_widens_with_seed_spread():
    from specalign.eval.stats import crossed_bootstrap_difference

    rng = np.random.default_rng(1)
    items = rng.normal(size=60)  # large item spread, identical in both arms
    value, low, high = crossed_bootstrap_difference([items + 0.1], [items])
    assert value == pytest.approx(0.1) and high - low < 1e-9  # paired: item spread cancels
    value, low, high = crossed_bootstrap_difference([items + 0.1, items + 0.5], [items])
    assert value == pytest.approx(0.3) and low < 0.15 and high > 0.45  # the seeds' spread
