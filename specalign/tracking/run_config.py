"""What every tracker run of a member carries at the top of its config: the experiment and
the member's choices (the sweep's axes among them), flat, so W&B's grouping, filters and
parallel-coordinates plot can use them directly; and the member's lineage, the steps its
result came from, each with the run that computed it."""

from __future__ import annotations

from typing import Any

import yaml

from specalign.report.members import choices


def typed(value: str) -> Any:
    """`"1"` -> 1, `"1e-4"` -> 0.0001, `"true"` -> True, anything else as written."""
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return parsed if isinstance(parsed, int | float | bool) else value


def flat_config(ctx: Any) -> dict[str, Any]:
    """{experiment, spec, stage, backbone, seed, eval_spec} and every command-line choice
    (`trace`, `trainer.args.learning_rate`, ...) as top-level keys."""
    cfg = ctx.cfg
    flat: dict[str, Any] = {
        "experiment": str(cfg.name),
        "spec": str(cfg.spec.id),
        "stage": str(cfg.stage.name),
        "backbone": str(cfg.backbone.name),
        "seed": int(cfg.seed),
        "eval_spec": str(ctx.eval_spec_config.get("id")),
    }
    for key, value in choices(ctx.overrides).items():
        flat.setdefault(key, typed(value))
    return flat


def lineage(results: list[Any]) -> list[dict[str, Any]]:
    """One row per step of the member: its key, whether this member ran it or reused it, and
    the experiment and tracker run that computed it."""
    rows = []
    for r in results:
        manifest = r.artifact.manifest
        rows.append(
            {
                "step": r.name,
                "key": r.artifact.key,
                "state": "reused" if r.cached else "ran",
                "made_in": manifest.get("experiment"),
                "made_by_run": manifest.get("tracker_run_id"),
                "seconds": round(r.seconds, 2),
            }
        )
    return rows


def lineage_summary(rows: list[dict[str, Any]], metrics: dict[str, Any]) -> dict[str, Any]:
    """Flat summary entries: `lineage/<step>/{key,state,made_in,made_by_run}` and each eval
    step's headline metrics as `<step>/<evaluator>/<metric>`."""
    out: dict[str, Any] = {}
    for row in rows:
        for field in ("key", "state", "made_in", "made_by_run"):
            out[f"lineage/{row['step']}/{field}"] = row[field]
    out.update(metrics)
    return out
