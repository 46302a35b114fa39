"""The eval step: load one model (the backbone, or a trained artifact) once and run every
evaluator of the `eval` group on it.

The base model's eval (`eval_base`, no `model` input) is an artifact of its own, keyed by the
backbone, the spec's items and the eval settings, so every run and sweep member with those
computes it once. A trained model's eval takes it as `baseline` and reports, per metric, the
shift (trained - base) with a paired bootstrap CI over the items both were scored on.

Artifact: `results.json` (records, shifts, skipped evaluators with their reasons),
`<evaluator>_items.jsonl` (per-item rows), `inspect/` (one inspect log per evaluator:
`inspect view --log-dir <artifact>/inspect`) and `metrics.json` (the flat headline metrics).
"""

from __future__ import annotations

import json
import logging
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from specalign.errors import ConfigError
from specalign.eval.evaluator import EvalRun, EvalSubject, Evaluator, build_evaluators
from specalign.eval.items import load_eval_items
from specalign.eval.records import records_of, shifts_of
from specalign.pipeline.key_sections import key_section
from specalign.pipeline.keys import canonical_json, content_key
from specalign.pipeline.step import Artifact, Step

log = logging.getLogger(__name__)
RESULTS = "results.json"


def read_rows(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    return [json.loads(line) for line in lines if line.strip()]


def flat_metrics(results: dict[str, Any]) -> dict[str, Any]:
    """Headline numbers for the manifest and the W&B summary (per-rule and per-domain
    breakdowns stay in results.json and the tables)."""
    metrics: dict[str, Any] = {}
    for r in results["records"]:
        if r["metric"].count("/") <= 1:
            metrics[f"{r['evaluator']}/{r['metric']}"] = r["value"]
    for s in results["shifts"]:
        if s["metric"].count("/") <= 1:
            metrics[f"{s['evaluator']}/{s['metric']}/shift"] = s["shift"]
    for name, reason in results["skipped"].items():
        metrics[f"{name}/skipped"] = reason
    return metrics


def table_line(rows: list[dict[str, Any]]) -> str:
    """A per-rule (or per-category) table on one log line: `CH1 0.67 (n=3), CH2 ...`: the
    first column is the label, the first other column but `n` the value."""
    cells = []
    for row in rows:
        (_, label), *rest = row.items()
        n = row.get("n")
        value = next(v for k, v in rest if k != "n")
        cells.append(f"{label} {value:.2f} (n={n})")
    return ", ".join(cells)


class EvalStep(Step):
    consumes = ("eval_items",)
    optional = ("model", "baseline")
    slot_kinds: ClassVar[dict[str, str]] = {"baseline": "metrics"}
    produces = "metrics"
    uses = ("backbone", "eval", "eval_spec")
    version = 2

    @cached_property
    def evaluators(self) -> dict[str, Evaluator]:
        return build_evaluators(self.ctx.section("eval.evaluators"))

    def fingerprint(self) -> dict[str, Any]:
        prints = {name: ev.fingerprint() for name, ev in self.evaluators.items()}
        return {name: p for name, p in prints.items() if p}

    def check_baseline(self, baseline: Artifact, items: Artifact) -> None:
        """A baseline scored with other items or eval settings cannot be paired with ours."""
        material = baseline.manifest["key_material"]
        same_items = material.get("inputs", {}).get("eval_items") == items.key
        ours = key_section("eval", self.ctx.section("eval"))
        same_eval = canonical_json(material.get("uses", {}).get("eval")) == canonical_json(ours)
        if not (same_items and same_eval):
            raise ConfigError(
                f"step {self.name}: baseline {baseline.step} ({baseline.key}) was evaluated with "
                "other eval items or settings. Fix: wire the stage's eval_base as `baseline`."
            )

    def subject(self, model_artifact: Artifact | None) -> EvalSubject:
        import torch

        from specalign.llm.factory import request_cache
        from specalign.train.model_artifact import load_model  # peft/transformers: run time

        backbone = self.ctx.backbone
        device_map = "cuda:0" if torch.cuda.is_available() else None  # one GPU if present
        model = load_model(backbone, model_artifact, device_map=device_map).eval()
        if hasattr(model, "merge_and_unload"):  # a LoRA adapter: the same function, faster
            model = model.merge_and_unload()
        label = (
            f"{model_artifact.step}-{model_artifact.key}"
            if model_artifact is not None
            else f"backbone-{content_key(self.ctx.section('backbone'))}"
        )
        return EvalSubject(
            label,
            model,
            backbone.load_tokenizer(),
            backbone,
            int(self.ctx.section("eval.batch_size") or 16),
            request_cache(self.ctx),
            artifact=model_artifact,
        )

    def grader(self) -> Any:
        from specalign.llm.factory import build_llm

        if not self.ctx.section("eval.grader"):
            raise ConfigError(
                "eval.grader is not set. Fix: eval.grader=${synthesizer} (conf/eval/_common.yaml)."
            )
        return build_llm(self.ctx, "eval.grader")

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        spec = self.ctx.eval_spec
        items = load_eval_items(inputs["eval_items"])
        baseline = inputs.get("baseline")
        if baseline is not None:
            self.check_baseline(baseline, inputs["eval_items"])
        results: dict[str, Any] = {"records": [], "shifts": [], "skipped": {}, "tables": {}}
        subject = None
        for name, evaluator in self.evaluators.items():
            selected = evaluator.select(items[evaluator.items])
            reason = evaluator.skip_reason(selected, spec)
            if reason:
                log.info("%s: evaluator %s skipped: %s", self.name, name, reason)
                results["skipped"][name] = reason
                continue
            if subject is None:  # loaded once, and only if some evaluator applies
                subject = self.subject(inputs.get("model"))
            log.info("%s: %s on %d items (%s)", self.name, name, len(selected), subject.label)
            run = EvalRun(subject, selected, out, spec, self.grader, int(self.ctx.cfg.seed))
            result = evaluator.evaluate(run)
            with open(out / f"{name}_items.jsonl", "w", encoding="utf-8") as handle:
                for row in result.rows:
                    handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            records = [r.to_dict() for r in records_of(name, result.measures)]
            results["records"] += records
            self.log_table(f"{name}/records", records)
            if baseline is not None:
                base = evaluator.measures(read_rows(baseline.path / f"{name}_items.jsonl"))
                shifts = [s.to_dict() for s in shifts_of(name, base, result.measures)]
                results["shifts"] += shifts
                self.log_table(f"{name}/shifts", shifts)
            for table, rows in result.tables.items():
                results["tables"][f"{name}/{table}"] = rows
                self.log_table(f"{name}/{table}", rows)
                log.info("%s: %s %s: %s", self.name, name, table, table_line(rows))
        results["subject"] = subject.label if subject else None
        results["baseline"] = baseline.key if baseline else None
        (out / RESULTS).write_text(json.dumps(results, indent=2, default=str))
        metrics = flat_metrics(results)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        return metrics
