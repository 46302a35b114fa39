"""What a researcher reads at the end of a run: each step, cached or not, where its artifact
is, and the metrics; the same as JSON in the Hydra run directory (summary.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from specalign.eval.inspect_log import LOG_DIR
from specalign.pipeline.plan import Plan, PlannedStep
from specalign.pipeline.runner import StepResult
from specalign.pipeline.store import ArtifactStore
from specalign.report.eval_table import eval_table


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


def evaluation(result: StepResult) -> dict[str, Any] | None:
    """An eval step's results.json (records, shifts, per-rule tables, skipped evaluators)."""
    path = result.artifact.path / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None


def write_summary(cfg: DictConfig, results: list[StepResult], run_dir: Path) -> Path:
    evaluations = {r.name: e for r in results if (e := evaluation(r)) is not None}
    summary = {
        "experiment": cfg.name,
        "stage": cfg.stage.name,
        "spec": cfg.spec.id,
        "backbone": cfg.backbone.name,
        "steps": [
            {
                "name": r.name,
                "key": r.artifact.key,
                "cached": r.cached,
                "seconds": round(r.seconds, 2),
                "artifact": str(r.artifact.path),
                "metrics": r.metrics,
                **({"evaluation": evaluations[r.name]} if r.name in evaluations else {}),
            }
            for r in results
        ],
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "summary.json"
    path.write_text(json.dumps(summary, indent=2, default=str))
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
    print(f"summary: {path}")
    return path
