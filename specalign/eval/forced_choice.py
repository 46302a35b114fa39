"""Forced-choice generalization: which option does the model's likelihood prefer?

MSM's cheese result is measured this way: on held-out domains (literature, transport, ...)
each item offers an option expressing the spec's value (e.g. "america") and one expressing
the other spec's ("affordability"). The metric is how often, and by how much, the model
prefers the spec-consistent option. Log-likelihood scoring needs no judge and moves
measurably even at 135M parameters.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from specalign.errors import SpecAlignError
from specalign.pipeline.dataset_io import read_jsonl
from specalign.pipeline.keys import file_sha256
from specalign.spec import resolve_spec_file

FIELDS = ("id", "prompt", "options", "values", "split")


class ForcedChoiceEval:
    def __init__(self, items: str | None, target_values: list[str], batch_size: int = 16) -> None:
        if not items:
            raise SpecAlignError(
                "eval=generalization needs forced-choice items, but spec.eval_items is not set. "
                "Fix: add `eval_items: <file.jsonl>` to the spec's conf entry."
            )
        self.path = resolve_spec_file(items, key="spec.eval_items")
        self.target_values = [str(v) for v in target_values]
        self.batch_size = batch_size

    def fingerprint(self) -> dict[str, Any]:
        return {"items_sha256": file_sha256(self.path)}

    def load_items(self) -> list[dict[str, Any]]:
        items = read_jsonl(self.path, FIELDS, key="spec.eval_items")
        for item in items:
            targets = [i for i, v in enumerate(item["values"]) if v in self.target_values]
            if len(item["options"]) != len(item["values"]) or len(targets) != 1:
                raise SpecAlignError(
                    f"{self.path}: item {item['id']}: needs as many values as options and "
                    f"exactly one value in {self.target_values} (got {item['values']})."
                )
            item["target"] = targets[0]
        return items

    def evaluate(self, model: Any, tokenizer: Any, backbone: Any) -> tuple[dict, list[dict]]:
        from specalign.llm.scoring import continuation_logprobs  # torch: run time only

        items = self.load_items()
        prompts, options = [], []
        for item in items:
            chat = [{"role": "user", "content": item["prompt"]}]
            prompt = backbone.apply_chat_template(tokenizer, chat, add_generation_prompt=True)
            prompts += [prompt] * len(item["options"])
            options += item["options"]
        scores = iter(continuation_logprobs(model, tokenizer, prompts, options, self.batch_size))
        rows = []
        for item in items:
            sums = [sum(next(scores)) for _ in item["options"]]
            per_char = [s / max(len(o), 1) for s, o in zip(sums, item["options"], strict=True)]
            target = item["target"]
            best_other = max(s for i, s in enumerate(sums) if i != target)
            total = math.log(sum(math.exp(s - max(sums)) for s in sums)) + max(sums)
            rows.append(
                {
                    "id": item["id"],
                    "split": item["split"],
                    "domain": item.get("domain", ""),
                    "target": item["options"][target],
                    "logprobs": sums,
                    "chose_target": sums[target] == max(sums),
                    "chose_target_norm": per_char[target] == max(per_char),
                    "margin": sums[target] - best_other,
                    "p_target": math.exp(sums[target] - total),
                }
            )
        return summarize(rows), rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Per split (and per domain): target rate, length-normalized rate, margin, p(target)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row["split"]].append(row)
        if row["domain"]:
            groups[f"{row['split']}/{row['domain']}"].append(row)
    metrics: dict[str, float] = {}
    for name, group in sorted(groups.items()):
        n = len(group)
        metrics[f"{name}/target_rate"] = sum(r["chose_target"] for r in group) / n
        if "/" not in name:
            metrics[f"{name}/target_rate_norm"] = sum(r["chose_target_norm"] for r in group) / n
            metrics[f"{name}/margin"] = sum(r["margin"] for r in group) / n
            metrics[f"{name}/p_target"] = sum(r["p_target"] for r in group) / n
            metrics[f"{name}/n"] = n
    return metrics
