"""What a researcher reads at the end of a run: each step, cached or not, where its artifact
is, and the metrics; the same as JSON in the Hydra run directory (summary.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from specalign.eval.inspect_log import LOG_DIR
from specalign.pipeline.context import RunContext
from specalign.pipeline.plan import Plan, PlannedStep
from specalign.pipeline.runner import StepResult
from specalign.pipeline.store import ArtifactStore
from specalign.report.eval_table import eval_table, headline_table


def print_plan(plan: Plan, states: list[tuple[PlannedStep, bool]], store: ArtifactStore) -> None:
    print(f"plan for stage={plan.stage} (store {store.root}):")
    width = max(len(p.name) for p in plan.steps)
    for planned, cached in states:
        inputs = ", ".join(f"{slot}<-{src}" for slot, src in planned.inputs.items()) or "-"
        state = "cached" if cached else "to run"
        print(f"  {planned.name:<{width}}  {planned.key}  {state:<7} inputs: {inputs}")
        estimate = None if cached else planned.step.estimate()
        if estimate:
            print(f"  {'':<{width}}  would spend: {format_metrics(estimate)}")
    todo = sum(not cached for _, cached in states)
    print(f"{todo} of {len(states)} steps to run.")


def format_metrics(metrics: dict[str, Any], max_depth: int = 2) -> str:
    """Headline metrics only (`evaluator/split/name`); per-domain breakdowns stay in the
    artifact's metrics.json and W&B."""
    parts = [
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in metrics.items()
        if k.count("/") <= max_depth
    ]
    return ", ".join(parts)


def run_identity(ctx: RunContext) -> dict[str, Any]:
    """What a report needs to place a run in its sweep without the Hydra directory: its
    choices, the specs (training and evaluation), the evaluators' settings (to rebuild their
    measures from per-item rows), the report settings and the logger (no secrets: W&B reads
    its key from its own login)."""
    cfg = ctx.cfg
    return {
        "experiment": cfg.name,
        "stage": cfg.stage.name,
        "spec": cfg.spec.id,
        "eval_spec": ctx.eval_spec_config.get("id"),
        "backbone": cfg.backbone.name,
        "seed": int(cfg.seed),
        "overrides": list(ctx.overrides),
        "spec_config": ctx.section("spec"),
        "eval": ctx.section("eval"),
        "report": ctx.section("report") or {},
        "logger": ctx.section("logger"),
    }


def write_plan(ctx: RunContext, states: list[tuple[PlannedStep, bool]], run_dir: Path) -> Path:
    """plan.json: a dry run's steps and keys, so a sweep's dry run can list each distinct
    step once with the members that share it (report/sweep_plan.py)."""
    plan = {
        **run_identity(ctx),
        "dry_run": True,
        "steps": [
            {"name": p.name, "key": p.key, "cached": cached, "inputs": p.inputs}
            for p, cached in states
        ],
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "plan.json"
    path.write_text(json.dumps(plan, indent=2, default=str))
    return path


def write_failure(overrides: list[str], error: str, run_dir: Path) -> Path:
    """failed.json: a sweep member that stopped on a user error, so the sweep goes on and its
    report names the member and the error."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "failed.json"
    path.write_text(json.dumps({"overrides": overrides, "error": error}, indent=2))
    return path


def evaluation(result: StepResult) -> dict[str, Any] | None:
    """An eval step's results.json (records, shifts, per-rule tables, skipped evaluators)."""
    path = result.artifact.path / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None


def made_by(result: StepResult) -> dict[str, Any]:
    """Which experiment and tracker run computed the artifact (itself, or an earlier run)."""
    manifest = result.artifact.manifest
    return {"experiment": manifest.get("experiment"), "run": manifest.get("tracker_run_id")}


def write_summary(ctx: RunContext, results: list[StepResult], run_dir: Path) -> Path:
    cfg = ctx.cfg
    evaluations = {r.name: e for r in results if (e := evaluation(r)) is not None}
    summary = {
        **run_identity(ctx),
        "steps": [
            {
                "name": r.name,
                "key": r.artifact.key,
                "cached": r.cached,
                "seconds": round(r.seconds, 2),
                "artifact": str(r.artifact.path),
                "metrics": r.metrics,
                "made_by": made_by(r),
                **({"evaluation": evaluations[r.name]} if r.name in evaluations else {}),
            }
            for r in results
        ],
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "summary.json"
    tmp = run_dir / ".summary.json.tmp"  # a killed run never leaves half a summary
    tmp.write_text(json.dumps(summary, indent=2, default=str))
    tmp.replace(path)
    print(f"\nexperiment {cfg.name}: {len(results)} steps")
    for r in results:
        state = "reused" if r.cached else f"ran {r.seconds:.1f}s"
        print(f"  {r.name:<16} {state:<10} {r.artifact.path}")
    for r in results:
        if r.metrics and r.name not in evaluations:
            print(f"  {r.name}: {format_metrics(r.metrics)}")
    if evaluations:
        print("\nevaluations (shift = trained - base, paired bootstrap over items):")
        for r in results:
            if r.name in evaluations:
                print("\n".join(eval_table(r.name, evaluations[r.name])))
                print(f"    inspect view start --log-dir {r.artifact.path / LOG_DIR}")
        headline = cfg.get("report", {}).get("headline")
        if headline:
            print("\n".join(headline_table(OmegaConf.to_container(headline), evaluations)))
    print(f"summary: {path}")
    return path
