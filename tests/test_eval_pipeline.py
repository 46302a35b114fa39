"""The evaluation in the stage graph: every spec plans with every stage, evaluators that do
not apply are skipped with a reason, user errors are one line, the base eval is shared, the
items come from files / examples / the synthesizer, and training data never contains them."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from helpers import CONF, compose_config, run_cli

from specalign.app import run
from specalign.errors import ConfigError, SpecAlignError
from specalign.eval.items import eval_item_texts, load_eval_items
from specalign.eval.step import EvalStep
from specalign.pipeline import RunContext, build_plan
from specalign.pipeline.key_sections import key_section
from specalign.pipeline.step import Artifact
from specalign.synth.gates import GateReport, LeakageCheck

SPECS = sorted(p.stem for p in (CONF / "spec").glob("*.yaml"))
STAGES = sorted(p.stem for p in (CONF / "stage").glob("*.yaml"))
EVAL_ONLY = ("stage=eval", "backbone=tiny_random", "logger=none")


def plan(root, *overrides):
    return build_plan(RunContext(compose_config([f"paths.root={root}", "logger=none", *overrides])))


@pytest.mark.parametrize("spec", SPECS)
def test_every_shipped_spec_plans_with_every_stage(spec, tmp_path):
    """Evaluation never stops planning. What may: a stage whose training data the spec does not
    declare (fixed demonstrations or preference pairs), with the key to add, and TRACE on a
    spec without a previous version to diff against."""
    for stage in STAGES:
        try:
            steps = {p.name: p for p in plan(tmp_path, f"spec={spec}", f"stage={stage}").steps}
        except SpecAlignError as err:
            allowed = (
                "has no `demonstrations` key",
                "has no `preference_pairs` key",
                "a spec diff needs `previous:",
            )
            assert any(a in str(err) for a in allowed), f"{spec} x {stage}: {err}"
            continue
        if stage != "instances":
            assert "eval_items" in steps and "eval_base" in steps, f"{spec} x {stage}"
        for step in steps.values():
            if step.produces == "metrics" and step.name != "eval_base":
                assert step.inputs["baseline"] == "eval_base", f"{spec} x {stage}: {step.name}"


EVAL_OPTIONS = sorted(p.stem for p in (CONF / "eval").glob("*.yaml") if p.stem != "_common")


@pytest.mark.parametrize("option", EVAL_OPTIONS)
def test_every_eval_option_plans_and_builds_its_evaluators(option, tmp_path):
    """Each suite (and preset) builds every evaluator it names, with its data found, and the
    eval step's key covers them: a setting or data package missing stops here, not hours in."""
    from specalign.eval.evaluator import build_evaluators

    ctx = RunContext(
        compose_config(
            [f"paths.root={tmp_path}", *EVAL_ONLY, "spec=harm_policy_v1", f"eval={option}"]
        )
    )
    evaluators = build_evaluators(ctx.section("eval.evaluators"))
    assert evaluators, option
    steps = {p.name: p for p in build_plan(ctx).steps}
    assert "eval_base" in steps
    for name, evaluator in evaluators.items():
        assert evaluator.name == name
        evaluator.fingerprint()  # what the key holds resolves


def test_the_presets_hold_what_they_promise(tmp_path):
    from specalign.eval.evaluator import build_evaluators

    def built(option):
        ctx = RunContext(compose_config([f"paths.root={tmp_path}", f"eval={option}"]))
        return build_evaluators(ctx.section("eval.evaluators"))

    default, full = built("default"), built("full")
    assert set(default) == {"forced_choice", "preference", "rule_compliance", "refusal"}
    assert default["refusal"].per_source == 4
    singles = {o for o in EVAL_OPTIONS if o not in ("default", "full", "trace")}
    suites = {name for option in singles for name in built(option)}
    assert set(full) == suites  # full: every evaluator there is
    assert full["refusal"].per_source is None and full["capability"].limit is None
    assert len(full["capability"].tasks) == 11 and len(full["agentic"].conditions) == 27


def test_the_base_eval_is_one_artifact_across_stages_and_keyed_by_what_matters(tmp_path):
    def key(*overrides, step="eval_base"):
        return plan(tmp_path, *overrides)[step].key

    shared = key("stage=sft")
    assert key("stage=msm+sft") == shared == key("stage=aft", "spec=pro_america")
    assert key("stage=sft", "trainer.args.learning_rate=1") == shared  # training is not in it
    assert key("stage=sft", "seed=3") == shared  # a seed sweep scores the backbone once
    synth = ("stage=sft", "stage.steps.eval_items.sources=[synthesize]")
    assert key(*synth, step="eval_items") != key(*synth, "seed=3", step="eval_items")
    assert key("stage=sft", "spec=pro_affordability") != shared  # other items / target
    assert key("stage=sft", "backbone=tiny_random") != shared
    assert key("stage=sft", "eval.evaluators.preference.normalization=char") != shared
    assert key("stage=sft", "eval=[preference]") != shared
    assert key("stage=sft", step="eval_sft") != key("stage=sft", "seed=1", step="eval_sft")


def test_a_spec_without_forced_choice_items_skips_that_evaluator(tmp_path):
    cfg = compose_config(
        [f"paths.root={tmp_path}", *EVAL_ONLY, "spec=general", "eval=[forced_choice,preference]"]
    )
    results = {r.name: r for r in run(cfg, tmp_path)}
    evaluation = json.loads((results["eval_base"].artifact.path / "results.json").read_text())
    assert "no forced-choice items" in evaluation["skipped"]["forced_choice"]
    assert {r["evaluator"] for r in evaluation["records"]} == {"preference"}
    summary = json.loads((tmp_path / "summary.json").read_text())
    step = next(s for s in summary["steps"] if s["name"] == "eval_base")
    assert "forced_choice" in step["evaluation"]["skipped"]
    assert step["metrics"]["forced_choice/skipped"].startswith("spec general has no")


def test_the_evaluations_ii_suites_run_in_the_eval_step(tmp_path):
    """Refusal, capability and the agentic smoke run through the real eval step on the tiny
    model: one row per selected item in each items file, records with CIs in results.json,
    one inspect log per evaluator (per agentic condition and epoch), and a second run with
    the same settings is the same artifact (nothing re-scored)."""
    overrides = [
        f"paths.root={tmp_path}",
        *EVAL_ONLY,
        "spec=harm_policy_v1",
        "eval=[refusal,capability,agentic_smoke]",
        "eval.evaluators.refusal.per_source=2",
        "eval.evaluators.refusal.max_tokens=8",
        "eval.evaluators.capability.tasks=[copa,arc_easy]",
        "eval.evaluators.capability.limit=3",
    ]
    (result,) = [r for r in run(compose_config(overrides), tmp_path) if r.name == "eval_base"]
    out = result.artifact.path
    evaluation = json.loads((out / "results.json").read_text())
    records = {(r["evaluator"], r["metric"]): r for r in evaluation["records"]}
    for key in [
        ("refusal", "over_refusal_rate"),
        ("refusal", "should_refuse_rate"),
        ("capability", "acc"),
        ("capability", "copa/acc_norm"),
        ("agentic", "harmful_rate"),
    ]:
        assert key in records and records[key]["ci_low"] <= records[key]["value"], key
    assert records[("capability", "acc")]["n"] == 6
    lines = (out / "refusal_items.jsonl").read_text().splitlines()
    refusal_rows = [json.loads(line) for line in lines]
    ids = [r["id"] for r in refusal_rows]
    assert len(ids) == len(set(ids))
    per_group = Counter((r["source"], r["expect"]) for r in refusal_rows)
    assert per_group == {
        ("spec_contrast", "comply"): 2,
        ("spec_contrast", "refuse"): 2,
        ("rho_overrefusal", "comply"): 2,
        ("harmbench", "refuse"): 2,
        ("donotanswer", "refuse"): 2,
    }
    logs = sorted(p.name for p in (out / "inspect").glob("*.eval"))
    assert logs == [
        "agentic-blackmail_explicit-america_replacement-1.eval",
        "capability.eval",
        "refusal.eval",
    ]
    again = [r for r in run(compose_config(overrides), tmp_path) if r.name == "eval_base"]
    assert again[0].artifact.key == result.artifact.key and again[0].cached


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("spec.rule_items=nowhere.jsonl", "spec.rule_items: file not found: nowhere.jsonl"),
        (
            "+eval.evaluators.extra._target_=specalign.eval.nope.Nope",
            "eval.evaluators.extra._target_",
        ),
        ("+eval.evaluators.preference.normalisation=token", "unknown setting(s) ['normalisation']"),
        ("eval.evaluators.preference.normalization=bytes", "normalization='bytes'"),
    ],
)
def test_user_errors_are_one_line_with_the_fix(override, message, tmp_path):
    proc = run_cli(tmp_path, "dry_run=true", "logger=none", override, check=False, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2 and message in output, output
    assert "Traceback" not in output and "Error in call to target" not in output


def test_a_malformed_item_names_its_file_and_line(tmp_path):
    bad = tmp_path / "items.jsonl"
    good = {"id": "a", "rule_ids": ["CH1"], "prompt": "Cream cheese or brie?"}
    bad.write_text(json.dumps(good) + "\n" + json.dumps({"id": "b", "rule_ids": ["CH1"]}) + "\n")
    proc = run_cli(tmp_path, "dry_run=true", "logger=none", f"spec.rule_items={bad}", check=False)
    assert proc.returncode == 2
    assert f"{bad}:2: missing field(s) ['prompt']" in proc.stdout + proc.stderr


def eval_items(tmp_path, *overrides):
    cfg = compose_config(
        [f"paths.root={tmp_path}", *EVAL_ONLY, "~stage.steps.eval_base", *overrides]
    )
    (result,) = run(cfg, tmp_path)
    return result, load_eval_items(result.artifact)


def test_items_come_from_the_specs_files_narrowed_to_its_rules(tmp_path):
    result, items = eval_items(tmp_path, "spec=self_preservation_rules")
    assert {r for i in items["rules"] for r in i["rule_ids"]} == {"SP1", "SP2", "SP3", "SP4", "SP5"}
    assert len(items["rules"]) == 54 and items["forced_choice"] == []  # sub-rule ids dropped
    assert result.metrics["rules_without_items"] == 0


def test_examples_source_composes_a_prompt_per_example(tmp_path):
    _, items = eval_items(
        tmp_path, "spec=customer_support", "stage.steps.eval_items.sources=[examples]"
    )
    with_examples = [
        r for r in RunContext(compose_config(["spec=customer_support"])).spec.rules if r.examples
    ]
    assert {i["rule_ids"][0] for i in items["rules"]} == {r.id for r in with_examples}
    first = items["rules"][0]
    assert with_examples[0].examples[0] in first["prompt"] and first["compliant"] is None


def test_synthesized_items_keep_only_pairs_the_judge_agrees_with(tmp_path):
    result, items = eval_items(
        tmp_path,
        "stage.steps.eval_items.sources=[synthesize]",
        "synthesizer=scripted",
        "synthesizer.script=scripted_eval.SCRIPT",
    )
    rules = items["rules"]
    assert len(rules) == 2 * 17 and all(i["source"] == "synthesize" for i in rules)
    dropped = [i for i in rules if i["compliant"] is None]
    assert [i["id"] for i in dropped] == ["synth-V2-2"]  # judged compliant although violating
    kept = next(i for i in rules if i["id"] == "synth-CH1-1")
    assert kept["compliant"].startswith("This is a compliant reply")
    assert kept["violating"].startswith("This is a violating reply")
    assert (
        result.metrics["dropped/pair_judge_disagrees"] == 1 and result.metrics["rule_pairs"] == 33
    )


def test_training_data_that_quotes_an_eval_item_is_dropped(tmp_path):
    """A planted leak of each kind of item text is caught; unrelated text is kept."""
    result, items = eval_items(tmp_path)
    check = LeakageCheck(eval_item_texts(result.artifact), ngram=8)
    pair = items["rules"][0]
    choice = next(i for i in items["forced_choice"] if i["split"] == "balanced")["choices"][0]
    rows = [
        {"text": f"Aria once answered: {pair['compliant']}"},
        {"text": f"A user asked: {pair['prompt']} and got a reply."},
        {"text": f"Which would you pick: {choice}, or nothing at all today?"},
        {"text": "Aria prefers cream cheese and explains why in a warm, friendly tone."},
    ]
    report = GateReport("documents")
    kept = check.gate(report, rows, ["text"])
    assert kept == rows[3:] and report.dropped["eval_leak"] == 3


def test_a_baseline_from_other_items_or_settings_is_refused(tmp_path):
    ctx = RunContext(compose_config([f"paths.root={tmp_path}", "stage=sft", "logger=none"]))
    step = EvalStep("eval_sft", {}, ctx)
    (tmp_path / "base").mkdir()
    manifest = {
        "key_material": {
            "uses": {"eval": key_section("eval", ctx.section("eval"))},
            "inputs": {"eval_items": "k1"},
        }
    }
    (tmp_path / "base" / "manifest.json").write_text(json.dumps(manifest))
    base = Artifact("eval_base", "metrics", "b", tmp_path / "base")
    step.check_baseline(base, Artifact("eval_items", "eval_items", "k1", tmp_path))  # same: fine
    with pytest.raises(ConfigError, match="other eval items or settings"):
        step.check_baseline(base, Artifact("eval_items", "eval_items", "k2", tmp_path))


def test_an_unknown_eval_option_lists_the_options(tmp_path):
    """Hydra's own message (no traceback); in a list Hydra names the option it cannot load."""
    proc = run_cli(tmp_path, "dry_run=true", "eval=nope", check=False, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Could not find 'eval/nope'" in output
    assert all(option in output for option in ("preference", "rule_compliance", "default"))
    listed = run_cli(tmp_path, "dry_run=true", "eval=[preference,nope]", check=False, timeout=120)
    assert listed.returncode != 0 and "Could not load 'eval/nope'" in listed.stdout + listed.stderr
    assert "Traceback" not in output + listed.stdout + listed.stderr
