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


def ci_text(value: float | None, low: float | None, high: float | None, sign: bool = False) -> str:
    """`value [low, high]`, the one way every table writes a value with its 95% CI."""
    return f"{fmt(value, sign)} [{fmt(low, sign)}, {fmt(high, sign)}]"


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
                ci_text(s["shift"], s["ci_low"], s["ci_high"], True),
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
                ci_text(r["value"], r["ci_low"], r["ci_high"]),
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


def headline_table(headline: dict[str, Any], evaluations: dict[str, dict[str, Any]]) -> list[str]:
    """The run's answer in a few lines (`report.headline`): per eval step and headline metric
    (`<evaluator>/<metric>`), its value with its 95% CI and, where the step has a baseline,
    the shift vs the base model with its paired-bootstrap 95% CI."""
    wanted = [str(m) for m in headline.get("metrics") or []]
    rows = []
    for step, results in evaluations.items():
        records = {f"{r['evaluator']}/{r['metric']}": r for r in results.get("records", [])}
        shifts = {f"{s['evaluator']}/{s['metric']}": s for s in results.get("shifts", [])}
        for metric in wanted:
            if metric not in records:
                continue
            r, s = records[metric], shifts.get(metric)
            shift = "-" if s is None else ci_text(s["shift"], s["ci_low"], s["ci_high"], True)
            value = ci_text(r["value"], r["ci_low"], r["ci_high"])
            rows.append((step, metric, value, shift, str(r["n"])))
    if not rows:
        return []
    header = ("step", "metric", "value [95% CI]", "shift vs base [95% CI]", "n")
    widths = [max(len(x) for x in column) for column in zip(header, *rows, strict=True)]
    lines = [f"\nheadline: {headline.get('title') or ', '.join(wanted)}"]
    for row in (header, *rows):
        lines.append("  " + "  ".join(x.ljust(w) for x, w in zip(row, widths, strict=True)))
    return lines
