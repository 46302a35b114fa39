"""Experiment presets: every preset composes and dry-runs its sweep, the sweep's shared steps
are listed once with the members that use them, the embedded model gets CPU sizes and a hub
backbone the cluster's, and a study's evaluation spec scores every arm, and the base model
once, on the same items."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import yaml
from helpers import CONF, compose_config, run_cli

from specalign.pipeline import RunContext, build_plan

PRESETS = ("cheese_generalization", "spec_science", "specalign_compliance", "trace_policy_shift")
STEP_LINE = re.compile(r"^  (\S+)\s+([0-9a-f]{16})\s+(to run|cached)\s+members: (.*)$")


def axes(preset: str) -> dict[str, list[str]]:
    raw = yaml.safe_load((CONF / "experiment" / f"{preset}.yaml").read_text())
    params = raw["hydra"]["sweeper"]["params"]
    return {k: str(v).split(",") for k, v in params.items()}


def sweep_plan(stdout: str) -> tuple[str, list[tuple[str, str, str]]]:
    """The sweep plan's header and its (step, key, members) lines."""
    lines = stdout[stdout.index("sweep plan for") :].splitlines()
    steps = [m.groups() for line in lines if (m := STEP_LINE.match(line))]
    return lines[0], [(name, key, members) for name, key, _, members in steps]


def plan_keys(*overrides: str) -> dict[str, str]:
    ctx = RunContext(compose_config(["logger=none", *overrides]))
    return {p.name: p.key for p in build_plan(ctx).steps}


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory):
    """Each preset's sweep dry-run once for the module: (stdout, sweep dir, root)."""
    done: dict[str, tuple[str, Path, Path]] = {}

    def dry_run(preset: str) -> tuple[str, Path, Path]:
        if preset not in done:
            root = tmp_path_factory.mktemp(preset)
            proc = run_cli(
                root,
                f"experiment={preset}",
                "dry_run=true",
                "logger=none",
                f"hydra.sweep.dir={root / 'sweep'}",
                flags=("--multirun",),
                timeout=300,
            )
            done[preset] = (proc.stdout, root / "sweep", root)
        return done[preset]

    return dry_run


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_dry_runs_its_sweep_with_each_distinct_step_listed_once(preset, dry_runs):
    stdout, sweep_dir, root = dry_runs(preset)
    expected = math.prod(len(v) for v in axes(preset).values())
    header, steps = sweep_plan(stdout)
    assert header.startswith(f"sweep plan for {preset}: {expected} members")
    # every member planned and wrote its plan; together they name exactly the listed steps
    plans = [json.loads(p.read_text()) for p in sweep_dir.glob("*/plan.json")]
    assert len(plans) == expected
    used = {(s["name"], s["key"]) for plan in plans for s in plan["steps"]}
    listed = [(name, key) for name, key, _ in steps]
    assert len(listed) == len(set(listed)) == len(used) and set(listed) == used
    uses = sum(len(plan["steps"]) for plan in plans)
    assert f"{uses} step uses, {len(used)} distinct steps" in header
    # the base model is evaluated once for the whole sweep
    base = [members for name, _, members in steps if name == "eval_base"]
    assert base == ["all"], base
    assert not list(root.glob("store/*/*/manifest.json"))  # a dry run computes nothing


def test_the_cheese_sweep_shares_sft_only_and_keeps_each_specs_msm(dry_runs):
    _, sweep_dir, _ = dry_runs("cheese_generalization")
    keys: dict[str, dict[tuple, set[str]]] = {}  # step -> (spec, stage, seed) -> its keys
    for path in sweep_dir.glob("*/plan.json"):
        plan = json.loads(path.read_text())
        member = (plan["spec"], plan["stage"], plan["seed"])
        for step in plan["steps"]:
            keys.setdefault(step["name"], {})[member] = {step["key"]}
    assert len(keys["eval_base"]) == 12

    def distinct(step, where=lambda m: True):
        return {k for m, ks in keys[step].items() if where(m) for k in ks}

    for shared in ("eval_items", "eval_base", "demonstrations"):
        assert len(distinct(shared)) == 1  # not keyed by spec, stage or seed
    for seed in (0, 1, 2):  # SFT only: one per seed, shared by both specs' members
        assert len(distinct("sft", lambda m, s=seed: m[1] == "sft" and m[2] == s)) == 1
        assert len(distinct("eval_sft", lambda m, s=seed: m[1] == "sft" and m[2] == s)) == 1
    assert len(distinct("sft", lambda m: m[1] == "sft")) == 3
    # MSM: one corpus and one midtraining per spec and seed, all different
    for step in ("documents", "midtrain", "eval_midtrain"):
        assert len(distinct(step)) == 6 and len(keys[step]) == 6
    # MSM + SFT: its own sft per spec and seed (it continues that midtraining)
    assert len(distinct("sft")) == 3 + 6


def test_the_embedded_model_runs_cpu_sizes_and_a_hub_backbone_the_clusters():
    cpu = compose_config(["experiment=cheese_generalization"])
    cluster = compose_config(["experiment=cheese_generalization", "backbone=qwen3_32b"])
    # CPU: documents composed from the spec (no hierarchy steps); cluster: the LLM hierarchy
    assert cpu.stage.steps.domains is None and cpu.stage.steps.midtrain.max_length == 512
    assert cpu.stage.steps.documents._target_.endswith("ComposedDocuments")
    assert cluster.stage.steps.domains.mode == "hierarchy"
    assert cluster.stage.steps.documents._target_.endswith("DocumentSynthesis")
    assert cluster.stage.steps.doc_types.count == 20 and cluster.stage.steps.ideas.per_type == 25
    assert cluster.stage.steps.midtrain.max_length == 8192
    science_cpu = compose_config(["experiment=spec_science"])
    science = compose_config(["experiment=spec_science", "backbone=qwen3_32b"])
    assert science_cpu.eval.evaluators.agentic is None  # a 135M model writes no tool calls
    assert len(science.eval.evaluators.agentic.conditions) == 2  # the 27-condition grid
    compliance = compose_config(["experiment=specalign_compliance", "stage=specalign"])
    assert compliance.stage.steps.instances.count == 12
    at_scale = ["experiment=specalign_compliance", "stage=specalign", "backbone=qwen3_8b"]
    assert compose_config(at_scale).stage.steps.instances.count == 256
    for preset in PRESETS:  # the cluster size plans on a hub backbone (nothing downloaded)
        for member in [f"{a}={v[0]}" for a, v in axes(preset).items()]:
            assert plan_keys(f"experiment={preset}", "backbone=qwen3_32b", member)


def test_an_evaluation_spec_scores_every_arm_on_the_same_items(tmp_path):
    root = f"paths.root={tmp_path}"
    study = ("experiment=cheese_generalization", root)
    america = plan_keys(*study, "spec=pro_america")
    affordability = plan_keys(*study, "spec=pro_affordability")
    for shared in ("eval_items", "eval_base"):
        assert america[shared] == affordability[shared]
    for own in ("documents", "midtrain", "eval_midtrain", "eval_sft"):
        assert america[own] != affordability[own]
    # without an evaluation spec each spec is scored on its own items
    plain = plan_keys(root, "spec=pro_america"), plan_keys(root, "spec=pro_affordability")
    assert plain[0]["eval_base"] != plain[1]["eval_base"]
    # the eval spec changes what is evaluated and what the leakage gates check (documents),
    # never training on fixed data
    fixed_study = "+spec@eval_spec=cheese_study"
    other = plan_keys(root, "spec=pro_america", fixed_study)
    assert other["eval_items"] != plain[0]["eval_items"]
    assert other["documents"] != plain[0]["documents"]
    fixed = plan_keys(root, "stage=sft"), plan_keys(root, "stage=sft", fixed_study)
    assert fixed[0]["eval_base"] != fixed[1]["eval_base"] and fixed[0]["sft"] == fixed[1]["sft"]
    ctx = RunContext(compose_config(["logger=none", *study, "spec=pro_affordability"]))
    assert (ctx.spec.id, ctx.eval_spec.id) == ("pro_affordability", "cheese_study")
    forced = ctx.section("eval.evaluators.forced_choice")
    assert forced["target_values"] == [None, "liked"]  # the study has no target value
    assert forced["values"] == ["america", "affordability"]


def test_without_an_evaluation_spec_the_run_spec_and_its_overrides_are_evaluated(tmp_path):
    spec_file = tmp_path / "mine.md"
    spec_file.write_text("# Mine\n\n## Rules\n\n- [M1] Be brief.\n- [M2] Be kind.\n")
    ctx = RunContext(
        compose_config(["logger=none", "stage=eval", "spec=general", f"spec.document={spec_file}"])
    )
    assert [r.id for r in ctx.eval_spec.rules] == ["M1", "M2"]
    assert ctx.eval_spec is ctx.spec


def test_a_member_that_stops_is_named_and_the_sweep_exits_2(tmp_path):
    """A user error in one member (a spec without fixed demonstrations) does not stop the
    others; the sweep lists what they would run, names the member and exits 2."""
    proc = run_cli(
        tmp_path,
        "stage=sft",
        "spec=pro_america,general",
        "dry_run=true",
        "logger=none",
        "report.at_sweep_end=false",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        flags=("--multirun",),
        check=False,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    header, steps = sweep_plan(proc.stdout)
    assert header.startswith("sweep plan for pro_america-sft: 1 members") and steps
    assert "#1: stopped: spec=general: this stage needs fixed demonstrations" in proc.stdout
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output
    assert re.search(r"sweep member #1 \(.*spec=general.*\) stopped: spec=general", output)
