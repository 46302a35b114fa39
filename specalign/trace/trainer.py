"""TraceTrainer: TRL's DPOTrainer with the loss replaced by TRACE's hybrid objective
(objective.py). Everything else is TRL's: tokenization, collation (chosen rows then
rejected rows), the cached reference log-probs of `ReferenceLogProbs` read from the batch,
LoRA handling, the training loop and checkpoints.

The KL term needs the reference's full next-token distribution on RETAIN chosen replies,
which the cached log-probs (one number per reply) do not hold. It is computed on the fly:
one no-grad forward of the KL rows' chosen sequences with the adapter disabled (TRL's own
`use_adapter` context, as its reference forward does). Caching it instead would store
tokens x vocabulary floats per reply (256 x 49,152 x 4 B = 50 MB for SmolLM2, 156 MB for
Qwen3), so the extra forward of the RETAIN rows in each batch is the cheaper choice.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import torch

from specalign.trace.objective import KL_TERM, forward_logps, mean_over, row_losses, token_kl

TRACE_COLUMNS = ("trace_term", "trace_weight", "npo_chosen", "npo_rejected")


class TraceCollator:
    """TRL's preference collator plus the per-row TRACE columns as tensors."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.inner(examples)
        if "trace_term" not in examples[0]:  # plain pairs (the impact step's gold batch)
            return batch
        batch["trace_term"] = torch.tensor([int(e["trace_term"]) for e in examples])
        for column in TRACE_COLUMNS[1:]:
            batch[column] = torch.tensor([float(e[column]) for e in examples])
        return batch


@functools.cache
def trace_trainer_class() -> type:
    from trl.trainer.utils import use_adapter

    from specalign.train.dpo import cached_ref_trainer_class

    class TraceTrainer(cached_ref_trainer_class()):
        """Settings: `trace_beta`, `trace_alpha_kl` (attributes set after construction)."""

        trace_beta: float = 0.3
        trace_alpha_kl: float = 0.1
        kl_reference_seconds: float = 0.0  # spent in the KL term's reference forwards
        kl_reference_tokens: int = 0  # the tokens they scored (what a cache would have held)

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.data_collator = TraceCollator(self.data_collator)

        def _set_signature_columns_if_needed(self) -> None:
            super()._set_signature_columns_if_needed()
            self._signature_columns = [*self._signature_columns, *TRACE_COLUMNS]

        def reference_logits(self, model: Any, inputs: dict[str, torch.Tensor]) -> Any:
            unwrapped = self.accelerator.unwrap_model(model)
            name = "ref" if "ref" in getattr(unwrapped, "peft_config", {}) else None
            started = time.perf_counter()
            with torch.no_grad(), use_adapter(unwrapped, adapter_name=name):
                logits = model(**inputs, use_cache=False).logits
            self.kl_reference_seconds += time.perf_counter() - started
            self.kl_reference_tokens += int(inputs["attention_mask"].sum())
            return logits

        def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
            mode = "train" if self.model.training else "eval"
            logits, logps = forward_logps(model, inputs)
            chosen, rejected = logps.chunk(2, dim=0)
            rows = chosen.shape[0]
            kl_rows = (inputs["trace_term"] == KL_TERM).nonzero().squeeze(1)
            kl = None
            if self.trace_alpha_kl > 0 and len(kl_rows):
                selected = {
                    "input_ids": inputs["input_ids"][kl_rows],
                    "attention_mask": inputs["attention_mask"][kl_rows],
                }
                ref_logits = self.reference_logits(model, selected)
                values = token_kl(ref_logits, logits[kl_rows], inputs["completion_mask"][kl_rows])
                kl = torch.zeros(rows, dtype=values.dtype, device=values.device)
                kl = kl.index_copy(0, kl_rows, values)
            terms = row_losses(
                inputs, chosen, rejected, beta=self.trace_beta, alpha_kl=self.trace_alpha_kl, kl=kl
            )
            loss = terms["loss"].mean()
            term = inputs["trace_term"]
            for name, index in (("dpo", 0), ("npo", 1), ("kl", 2)):
                value = mean_over(terms[name].detach(), term == index)
                if value is not None:
                    self._metrics[mode][f"trace/{name}"].append(value)
            margin = (chosen - inputs["ref_chosen_logps"]) - (
                rejected - inputs["ref_rejected_logps"]
            )
            dpo_rows = term == 0
            if dpo_rows.any():
                accuracy = (margin[dpo_rows] > 0).float().mean().item()
                self._metrics[mode]["rewards/accuracies"].append(accuracy)
                self._metrics[mode]["rewards/margins"].append(
                    (self.trace_beta * margin[dpo_rows]).mean().item()
                )
            return (loss, {"logits": logits}) if return_outputs else loss

    return TraceTrainer
