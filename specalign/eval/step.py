"""The eval step: load a model (the backbone, or a trained artifact) once and run every
evaluator of the `eval` group on it; metrics.json plus per-item rows for inspection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.utils import instantiate

from specalign.pipeline.step import Artifact, Step


class EvalStep(Step):
    optional = ("model",)
    produces = "metrics"
    uses = ("backbone", "eval", "spec")

    def evaluators(self) -> dict[str, Any]:
        configs = self.ctx.section("eval.evaluators") or {}
        return {name: instantiate(cfg) for name, cfg in configs.items()}

    def fingerprint(self) -> dict[str, Any]:
        return {
            name: evaluator.fingerprint()
            for name, evaluator in self.evaluators().items()
            if hasattr(evaluator, "fingerprint")
        }

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        import torch

        from specalign.train.model_artifact import load_model  # peft/transformers: run time only

        backbone = self.ctx.backbone
        device_map = "cuda:0" if torch.cuda.is_available() else None  # one GPU if present
        model = load_model(backbone, inputs.get("model"), device_map=device_map).eval()
        tokenizer = backbone.load_tokenizer()
        metrics: dict[str, Any] = {}
        for name, evaluator in self.evaluators().items():
            result, rows = evaluator.evaluate(model, tokenizer, backbone)
            metrics.update({f"{name}/{k}": v for k, v in result.items()})
            with open(out / f"{name}_items.jsonl", "w") as handle:
                for row in rows:
                    handle.write(json.dumps(row) + "\n")
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        return metrics
