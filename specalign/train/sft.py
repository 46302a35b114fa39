"""Supervised fine-tuning on conversations (`demonstrations` datasets) with TRL's SFTTrainer.

Loss is on the final assistant turn only: rows become TRL's conversational prompt-completion
form, for which TRL masks the prompt itself (no `{% generation %}` markers needed, which
SmolLM2's template lacks). By default the step continues the adapter it receives (MSM's AFT
continues the MSM adapter); `new_adapter: true` merges it and starts a fresh one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specalign.pipeline.step import Artifact, Step

if TYPE_CHECKING:
    from datasets import Dataset

log = logging.getLogger(__name__)
# torch, TRL, PEFT and datasets are imported inside run(): planning (dry runs, cached
# re-runs) only reads this class's attributes and should not pay ~5 s of imports.


def to_prompt_completion(dataset: Dataset, chat_template_kwargs: dict[str, Any]) -> Dataset:
    """`{messages}` -> `{prompt, completion}` with the last assistant turn as completion."""

    def split(row: dict[str, Any]) -> dict[str, Any]:
        out = {"prompt": row["messages"][:-1], "completion": row["messages"][-1:]}
        if chat_template_kwargs:
            out["chat_template_kwargs"] = chat_template_kwargs
        return out

    return dataset.map(split, remove_columns=dataset.column_names)


class SFTStep(Step):
    consumes = ("dataset",)
    optional = ("model",)
    produces = "model"
    uses = ("backbone", "trainer", "seed")
    all_ranks = True

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        from trl import SFTConfig, SFTTrainer

        from specalign.pipeline.dataset_io import load_dataset
        from specalign.train.trainer_run import starting_model, train_and_save
        from specalign.train.training_args import training_kwargs

        backbone, trainer_cfg = self.ctx.backbone, self.ctx.section("trainer")
        model, peft_config, base = starting_model(self, inputs)
        tokenizer = backbone.load_tokenizer()
        dataset = to_prompt_completion(
            load_dataset(inputs["dataset"]), backbone.chat_template_kwargs
        )
        checkpoints = work / "checkpoints"
        args = SFTConfig(
            **training_kwargs(
                trainer_cfg,
                self.settings.get("args"),
                checkpoints,
                seed=int(self.ctx.cfg.seed),
                report_to=self.ctx.tracker.report_to,
            ),
            max_length=int(self.settings.get("max_length", backbone.max_length)),
            packing=False,
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
        )
        metrics = train_and_save(self, trainer, tokenizer, inputs, out, checkpoints, base)
        return {**metrics, "rows": len(dataset)}
