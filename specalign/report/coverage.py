"""Spec coverage: for each rule of a spec, how much of the run's data carries its id, and how
the trained model did on it. A spec author reads it to see which rules the data never
taught (no document, demonstration or pair names them) or never tested (no eval item).

Columns: documents, demonstrations, preference pairs (the training datasets, told apart by
their schema), eval items (the eval_items artifact: rule, forced-choice and contrast items
that carry the rule's id), and the final model's per-rule compliance and preference
accuracy (its last eval step's `by_rule` tables). Over a sweep, one matrix per training
spec: counts are the mean over that spec's distinct artifacts of each kind (seeds make
several), scores the mean over its members' final evals.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from specalign.report.members import Member, Sweep

KINDS = ("documents", "demonstrations", "pairs")
SCORES = {"compliance": "rule_compliance/by_rule", "pref. accuracy": "preference/by_rule"}
COLUMNS = [*KINDS, "eval items", *SCORES]
EVAL_FILES = ("rules.jsonl", "forced_choice.jsonl", "contrast.jsonl")


def dataset_kind(columns: list[str]) -> str | None:
    """documents {text}, demonstrations {messages}, pairs {chosen, rejected}; the reference
    log-prob dataset repeats its pairs and is not counted twice."""
    if "rule_ids" not in columns or "ref_chosen_logps" in columns:
        return None
    if "chosen" in columns and "rejected" in columns:
        return "pairs"
    if "messages" in columns:
        return "demonstrations"
    if "text" in columns:
        return "documents"
    return None


def rule_counts(path: Path) -> tuple[str | None, Counter, int]:
    """(kind, rule id -> rows carrying it, rows without any rule id) of a dataset artifact."""
    from datasets import load_from_disk

    data = path / "data"
    if not data.is_dir():
        return None, Counter(), 0
    dataset = load_from_disk(str(data))
    kind = dataset_kind(dataset.column_names)
    if kind is None:
        return None, Counter(), 0
    counts: Counter = Counter()
    unattributed = 0
    for ids in dataset["rule_ids"]:
        counts.update(set(ids or []))
        unattributed += not ids
    return kind, counts, unattributed


def eval_item_counts(path: Path) -> Counter:
    counts: Counter = Counter()
    for name in EVAL_FILES:
        file = path / name
        for line in file.read_text(encoding="utf-8").splitlines() if file.is_file() else []:
            if line.strip():
                counts.update(set(json.loads(line).get("rule_ids") or []))
    return counts


def final_eval(member: Member) -> dict[str, Any] | None:
    steps = [s for s in member.steps() if "evaluation" in s]
    return steps[-1] if steps else None


def spec_rules(member: Member) -> tuple[str, list[Any]]:
    from specalign.spec import load_spec

    config = member.summary["spec_config"]
    spec = load_spec(config)
    return spec.id, list(spec.rules)


def coverage(sweep: Sweep) -> dict[str, dict[str, Any]]:
    """spec id -> {rows: [{rule, text, <column>: value}], notes: [...]} for every training
    spec of the sweep's finished members."""
    by_spec: dict[str, list[Member]] = defaultdict(list)
    rules: dict[str, list[Any]] = {}
    for member in sweep.members:
        if member.summary and member.summary.get("spec_config"):
            spec_id, spec_rule_list = spec_rules(member)
            by_spec[spec_id].append(member)
            rules[spec_id] = spec_rule_list
    return {spec_id: spec_coverage(members, rules[spec_id]) for spec_id, members in by_spec.items()}


def spec_coverage(members: list[Member], rules: list[Any]) -> dict[str, Any]:
    seen: set[str] = set()
    totals: dict[str, Counter] = defaultdict(Counter)
    artifacts: Counter = Counter()
    unattributed: Counter = Counter()
    for member in members:
        for step in member.steps():
            path = Path(step["artifact"])
            if step["key"] in seen or not (path / "manifest.json").is_file():
                continue
            seen.add(step["key"])
            kind = json.loads((path / "manifest.json").read_text()).get("kind")
            if kind == "eval_items":
                counts, column, missing = eval_item_counts(path), "eval items", 0
            elif kind == "dataset":
                column, counts, missing = rule_counts(path)
            else:
                continue
            if column is None:
                continue
            totals[column].update(counts)
            artifacts[column] += 1
            unattributed[column] += missing
    scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    finals = {e["key"]: e for m in members if (e := final_eval(m))}
    for step in finals.values():
        for column, table in SCORES.items():
            for row in step["evaluation"].get("tables", {}).get(table, []):
                value = next(v for k, v in row.items() if k not in ("rule_id", "n"))
                scores[column][row["rule_id"]].append(float(value))
    rows = []
    for rule in rules:
        row: dict[str, Any] = {"rule": rule.id, "text": rule.text}
        for column in (*KINDS, "eval items"):
            n = artifacts[column]
            row[column] = round(totals[column][rule.id] / n, 1) if n else None
            if n and float(row[column]).is_integer():
                row[column] = int(row[column])
        for column in SCORES:
            values = scores[column].get(rule.id)
            row[column] = sum(values) / len(values) if values else None
        rows.append(row)
    notes = [f"{column}: mean over {n} artifacts" for column, n in artifacts.items() if n > 1] + [
        f"{column}: {n} rows carry no rule id" for column, n in unattributed.items() if n
    ]
    absent = [c for c in (*KINDS, "eval items") if not artifacts[c]]
    if absent:
        notes.append(f"no {', '.join(absent)} in these runs")
    untaught = [r["rule"] for r in rows if not any(r.get(k) for k in KINDS if artifacts[k])]
    untested = [r["rule"] for r in rows if not r.get("eval items")]
    return {"rows": rows, "notes": notes, "untaught": untaught, "untested": untested}
