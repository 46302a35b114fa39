"""The reference policy's log-probs of each pair's chosen and rejected reply, computed once and
stored with the pairs, so DPO training runs no reference forward and keeps no reference model.

The numbers come from TRL's own code path, not `specalign.llm.scoring`: DPOTrainer tokenizes
conversational pairs through the chat template (prompt with the generation prompt, completion
starting where prompt and prompt+completion diverge), truncates at `max_length` and scores
with its fused LM head under its autocast. Reusing its `_prepare_dataset`, collator and
`compute_ref_log_probs` means DPOStep compares its policy against exactly what TRL would have
computed itself. The reference is the model this step receives: the backbone, or the input
adapter applied (TRL scores a PeftModel through its frozen "ref" copy of the adapter).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from specalign.pipeline import distributed
from specalign.pipeline.step import Artifact, Step
from specalign.train.dpo import REF_COLUMNS, cached_ref_trainer_class, dpo_config, reference_of

log = logging.getLogger(__name__)
TOKEN_COLUMNS = ("prompt_ids", "chosen_ids", "rejected_ids")


def reference_logps(trainer: Any, batch_size: int) -> tuple[list[float], list[float]]:
    """Summed completion log-probs of every row of `trainer.train_dataset`, in order, with
    TRL's collator and `compute_ref_log_probs`: the loop of its `_precompute_ref_logps`,
    minus the `datasets` cache file it writes. Under several processes each rank scores its
    shard of the (unshuffled) loader and every rank gets all rows back, in order, from
    `gather_for_metrics` (which drops the padding of the last uneven batch)."""
    import torch
    from torch.utils.data import DataLoader

    loader = trainer.accelerator.prepare(
        DataLoader(
            trainer.train_dataset,
            batch_size=batch_size,
            collate_fn=trainer.data_collator,
            shuffle=False,
        )
    )
    model = trainer.ref_model or trainer.model
    model.eval()
    chosen, rejected = [], []
    for batch in loader:
        ref_chosen, ref_rejected = trainer.compute_ref_log_probs(model, batch)
        ref_chosen, ref_rejected = trainer.accelerator.gather_for_metrics(
            (ref_chosen, ref_rejected)
        )
        chosen.append(ref_chosen.float().cpu())
        rejected.append(ref_rejected.float().cpu())
    return torch.cat(chosen).tolist(), torch.cat(rejected).tolist()


class ReferenceLogProbs(Step):
    consumes = ("dataset",)
    optional = ("model",)
    produces = "dataset"
    uses = ("backbone",)  # of the trainer group only what changes the numbers: fingerprint()
    # every rank: building a DPOTrainer passes TRL's `main_process_first` barriers, which a
    # rank-0-only step would pair with the other ranks' step barriers; the scoring is sharded
    all_ranks = True

    def fingerprint(self) -> dict[str, Any]:
        """The model (input key, backbone), tokenization and max length (settings) and the
        precision it runs in fix the numbers; learning rate, LoRA rank or logging do not."""
        from specalign.pipeline.key_sections import resolved_precision

        trainer = self.ctx.section("trainer") or {}
        return {
            "precision": resolved_precision(str(trainer.get("precision", "auto"))),
            "quantization": trainer.get("quantization"),
        }

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        from datasets import Value

        from specalign.pipeline.dataset_io import load_dataset, save_dataset
        from specalign.train.model_artifact import load_model
        from specalign.train.trainer_run import quantization_config

        backbone, trainer_cfg = self.ctx.backbone, self.ctx.section("trainer")
        start = inputs.get("model")
        max_length = int(self.settings.get("max_length", backbone.max_length))
        batch_size = int(self.settings.get("batch_size", 16))
        pairs = load_dataset(inputs["dataset"])
        pairs = pairs.remove_columns([c for c in REF_COLUMNS if c in pairs.column_names])
        model = load_model(backbone, start, **quantization_config(trainer_cfg))
        args = dpo_config(
            {"args": {"per_device_train_batch_size": batch_size}},
            trainer_cfg,
            work / "trainer",
            max_length=max_length,
            seed=0,
            report_to="none",
        )
        trainer = cached_ref_trainer_class()(
            model=model, args=args, train_dataset=pairs, processing_class=backbone.load_tokenizer()
        )
        chosen, rejected = reference_logps(trainer, batch_size)
        kept = trainer.train_dataset.remove_columns(list(TOKEN_COLUMNS))
        dataset = kept.add_column(REF_COLUMNS[0], chosen).add_column(REF_COLUMNS[1], rejected)
        for column in REF_COLUMNS:  # float32, as TRL's own precompute stores them
            dataset = dataset.cast_column(column, Value("float32"))
        if distributed.is_main():
            save_dataset(dataset, out)
        return {
            "rows": len(dataset),
            "rows_dropped": len(pairs) - len(dataset),  # prompt alone fills max_length
            "reference": reference_of(start),
            "max_length": max_length,
            "ref_chosen_logps_mean": sum(chosen) / max(len(chosen), 1),
            "ref_rejected_logps_mean": sum(rejected) / max(len(rejected), 1),
        }
