"""The evaluation table a run ends with: per evaluator and headline metric, the base model,
the trained model and the shift with its 95% CI; or, for the base model alone, each value
with its CI. Skipped evaluators are listed with their reasons."""

from __future__ import annotations

from typing import Any


def headline(metric: str) -> bool:
    """Overall and per-split metrics; per-rule, per-domain and per-design ones stay in
    results.json and the W&B tables."""
    return metric.count("/") <= 1


def fmt(value: float | None, sign: bool = False) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    return f"{value:+.3f}" if sign else f"{value:.3f}"


def eval_table(step: str, results: dict[str, Any]) -> list[str]:
    rows: list[tuple[str, ...]]
    if results.get("shifts"):
        header = ("evaluator", "metric", "base", "trained", "shift [95% CI]", "n")
        rows = [
            (
                s["evaluator"],
                s["metric"],
                fmt(s["base"]),
                fmt(s["trained"]),
                f"{fmt(s['shift'], True)} [{fmt(s['ci_low'], True)}, {fmt(s['ci_high'], True)}]",
                str(s["n"]),
            )
            for s in results["shifts"]
            if headline(s["metric"])
        ]
    else:
        header = ("evaluator", "metric", "value [95% CI]", "n")
        rows = [
            (
                r["evaluator"],
                r["metric"],
                f"{fmt(r['value'])} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]",
                str(r["n"]),
            )
            for r in results.get("records", [])
            if headline(r["metric"])
        ]
    lines = [f"  {step} ({results.get('subject') or 'no model loaded'}):"]
    if rows:
        widths = [max(len(x) for x in column) for column in zip(header, *rows, strict=True)]
        for row in (header, *rows):
            lines.append("    " + "  ".join(x.ljust(w) for x, w in zip(row, widths, strict=True)))
    for name, reason in results.get("skipped", {}).items():
        lines.append(f"    skipped {name}: {reason}")
    return lines
