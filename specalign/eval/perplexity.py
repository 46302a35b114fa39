"""Perplexity on general text: the cheap CPU check that re-alignment kept the model's
language ability (TRACE's capability axis; lm-eval suites come with "Evaluations II").

Each paragraph of a plain-text corpus (default: specalign/eval/data/general_text.jsonl, 40
paragraphs written for this project) is scored as raw text, no chat template, and the
per-paragraph mean token negative log-likelihood is the item; perplexity is exp of it.
A trained model's shift against the base is paired over the same paragraphs.
"""

from __future__ import annotations

import math
from importlib.resources import files
from pathlib import Path
from typing import Any

from specalign.errors import ConfigError
from specalign.eval.evaluator import EvalRun, Evaluator
from specalign.eval.inspect_log import LOG_DIR, write_scored_log
from specalign.eval.records import EvalResult, Measure, mean_by
from specalign.pipeline.dataset_io import read_jsonl
from specalign.pipeline.keys import file_sha256

DEFAULT_TEXT = "general_text.jsonl"


def text_path(name: str) -> Path:
    path = Path(name).expanduser()
    shipped = Path(str(files("specalign.eval") / "data")) / name
    for candidate in (path, shipped):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"eval.evaluators.perplexity.text={name}: no such file (looked at {path} and "
        f"{shipped}). Fix: a JSONL file with a `text` field per line, or {DEFAULT_TEXT}."
    )


class Perplexity(Evaluator):
    def __init__(
        self,
        name: str,
        text: str = DEFAULT_TEXT,
        max_items: int | None = None,
        max_length: int = 256,
        batch_size: int = 8,
    ) -> None:
        super().__init__(name)
        self.path = text_path(text)
        self.max_items = max_items
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)

    def fingerprint(self) -> dict[str, Any]:
        return {"text_sha256": file_sha256(self.path)}

    def select(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The corpus' paragraphs (the spec's eval items are not what this measures)."""
        rows = read_jsonl(self.path, required=("text",), key=f"eval.evaluators.{self.name}.text")
        rows = [{"id": str(r.get("id", i)), "text": str(r["text"])} for i, r in enumerate(rows)]
        return rows if self.max_items is None else rows[: int(self.max_items)]

    def skip_reason(self, items: list[dict[str, Any]], spec: Any) -> str | None:
        return None if items else f"{self.path} has no paragraphs"

    def nll(self, run: EvalRun, texts: list[str]) -> list[tuple[float, int]]:
        """(mean token NLL, tokens scored) per text, in batches, right-padded."""
        import torch

        model, tokenizer = run.subject.model, run.subject.tokenizer
        device = next(model.parameters()).device
        out = []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            ids = [
                tokenizer(t, add_special_tokens=True)["input_ids"][: self.max_length] for t in chunk
            ]
            width = max(len(i) for i in ids)
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
            input_ids = torch.tensor([i + [pad] * (width - len(i)) for i in ids], device=device)
            mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids], device=device)
            with torch.no_grad():
                logits = model(input_ids=input_ids, attention_mask=mask).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            token = logp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
            valid = mask[:, 1:].float()
            for row in range(len(chunk)):
                n = int(valid[row].sum())
                out.append((float(-(token[row] * valid[row]).sum()) / max(n, 1), n))
        return out

    def evaluate(self, run: EvalRun) -> EvalResult:
        scores = self.nll(run, [item["text"] for item in run.items])
        rows = [
            {"id": item["id"], "nll": nll, "perplexity": math.exp(nll), "tokens": n}
            for item, (nll, n) in zip(run.items, scores, strict=True)
        ]
        write_scored_log(
            run.log_dir / LOG_DIR / f"{self.name}.eval",
            task=self.name,
            model=run.subject.label,
            samples=[
                {
                    "id": r["id"],
                    "input": item["text"],
                    "target": "",
                    "output": "",
                    "value": r["nll"],
                    "explanation": f"mean token NLL {r['nll']:.4f} over {r['tokens']} tokens",
                    "metadata": {"perplexity": r["perplexity"]},
                }
                for r, item in zip(rows, run.items, strict=True)
            ],
            metrics={"nll": sum(r["nll"] for r in rows) / len(rows)},
            task_args={"text": str(self.path), "max_length": self.max_length},
        )
        return EvalResult(rows, self.measures(rows))

    def measures(self, rows: list[dict[str, Any]]) -> dict[str, Measure]:
        return {
            "nll": Measure(mean_by(rows, "nll"), False, "mean token NLL per paragraph"),
            "perplexity": Measure(mean_by(rows, "perplexity"), False, "exp(NLL) per paragraph"),
        }
