"""The TRACE benchmark's results table (docs/trace.md) from a `--multirun` directory of
`experiment=trace_policy_shift` (or any sweep over `trace=` and `seed=`):

    python -m specalign.report.trace_table <multirun dir> [--out table.md]

Per variant, the items of every seed are pooled: target policy agreement overall and by
category (invert / punish / retain) and preference accuracy with Wilson 95% CIs over the
pooled answers, the range of the per-seed values, and perplexity on general text (mean over
seeds, with its range); the base model's row comes first. Sweep-wide reports for every
experiment come with "Experiments at scale"; this table is TRACE's headline comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from specalign.eval.stats import wilson

CATEGORIES = ("invert", "punish", "retain")
ORDER = ("trace", "naive_dpo", "dpo_gold", "npo_only", "no_triage", "no_kl", "uniform_weights")


def items(artifact: Path, evaluator: str) -> list[dict[str, Any]]:
    path = artifact / f"{evaluator}_items.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def members(root: Path) -> list[dict[str, Any]]:
    """Each member's variant, seed and the artifacts of its trace eval and the base eval."""
    out = []
    for summary in sorted(root.rglob("summary.json")):
        data = json.loads(summary.read_text())
        steps = {s["name"]: s for s in data["steps"]}
        if "eval_trace" not in steps:
            continue
        config = (summary.parent / ".hydra" / "config.yaml").read_text()
        seed = next(
            (
                line.split(":", 1)[1].strip()
                for line in config.splitlines()
                if line.startswith("seed:")
            ),
            "?",
        )
        out.append(
            {
                "variant": steps["trace"]["metrics"]["variant"],
                "seed": seed,
                "trained": Path(steps["eval_trace"]["artifact"]),
                "base": Path(steps["eval_base"]["artifact"]),
            }
        )
    return out


def rate(rows: list[dict[str, Any]], field: str) -> tuple[float, int, float, float]:
    values = [float(r[field]) for r in rows if r.get(field) is not None]
    n = len(values)
    low, high = wilson(sum(values), n)
    return (sum(values) / n if n else float("nan")), n, low, high


def cell(rows_by_seed: list[list[dict[str, Any]]], field: str) -> str:
    pooled = [r for rows in rows_by_seed for r in rows]
    value, _, low, high = rate(pooled, field)
    per_seed = [rate(rows, field)[0] for rows in rows_by_seed]
    spread = f" ({min(per_seed):.2f}-{max(per_seed):.2f})" if len(per_seed) > 1 else ""
    return f"{value:.2f} [{low:.2f}, {high:.2f}]{spread}"


def perplexity(rows_by_seed: list[list[dict[str, Any]]]) -> str:
    import math

    per_seed = [math.exp(sum(r["nll"] for r in rows) / len(rows)) for rows in rows_by_seed]
    mean = sum(per_seed) / len(per_seed)
    spread = f" ({min(per_seed):.2f}-{max(per_seed):.2f})" if len(per_seed) > 1 else ""
    return f"{mean:.2f}{spread}"


def table(root: Path) -> str:
    found = members(root)
    if not found:
        raise SystemExit(f"{root}: no sweep member with an eval_trace step (summary.json).")
    groups: dict[str, list[Path]] = defaultdict(list)
    seeds: dict[str, list[str]] = defaultdict(list)
    for m in found:
        groups[m["variant"]].append(m["trained"])
        seeds[m["variant"]].append(m["seed"])
    groups = {"base model": [found[0]["base"]], **groups}
    head = ["model", "seeds", "TPA", *[f"TPA {c}" for c in CATEGORIES], "pref. acc.",
            *[f"pref. {c}" for c in CATEGORIES], "perplexity"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ranked = sorted(groups, key=lambda v: (v != "base model", ORDER.index(v) if v in ORDER else 99))
    for variant in ranked:
        paths = groups[variant]
        agreement = [items(p, "policy_agreement") for p in paths]
        preference = [items(p, "preference") for p in paths]
        cells = [variant, ",".join(sorted(seeds.get(variant, ["-"]))), cell(agreement, "agree")]
        for c in CATEGORIES:
            cells.append(
                cell([[r for r in rows if r["category"] == c] for rows in agreement], "agree")
            )
        cells.append(cell(preference, "correct"))
        for c in CATEGORIES:
            cells.append(
                cell(
                    [[r for r in rows if r.get("category") == c] for rows in preference], "correct"
                )
            )
        cells.append(perplexity([items(p, "perplexity") for p in paths]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    text = table(args.root)
    if args.out:
        args.out.write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
