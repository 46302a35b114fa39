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

from hydra.utils import instantiate

from specalign.errors import ConfigError
from specalign.pipeline import distributed
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


def quantization_config(trainer_cfg: dict[str, Any]) -> dict[str, Any]:
    """Load kwargs for 4-bit (QLoRA) backbones; CPU runs stop here with the fix."""
    quant = trainer_cfg.get("quantization")
    if not quant:
        return {}
    import torch

    if not torch.cuda.is_available():
        raise ConfigError("trainer=qlora needs a CUDA GPU (bitsandbytes 4-bit). Fix: trainer=lora.")
    from transformers import BitsAndBytesConfig

    compute = getattr(torch, quant.get("bnb_4bit_compute_dtype", "bfloat16"))
    config = BitsAndBytesConfig(**{**quant, "bnb_4bit_compute_dtype": compute})
    return {"quantization_config": config}


class SFTStep(Step):
    consumes = ("dataset",)
    optional = ("model",)
    produces = "model"
    uses = ("backbone", "trainer", "seed")
    all_ranks = True

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        from peft import PeftModel
        from trl import SFTConfig, SFTTrainer

        from specalign.pipeline.dataset_io import load_dataset
        from specalign.train.model_artifact import describe, load_model, save_model
        from specalign.train.training_args import loss_history, resume_checkpoint, training_kwargs

        backbone, trainer_cfg = self.ctx.backbone, self.ctx.section("trainer")
        start = inputs.get("model")
        model = load_model(backbone, start, trainable=True, **quantization_config(trainer_cfg))
        new_adapter = bool(self.settings.get("new_adapter", False))
        if isinstance(model, PeftModel) and (new_adapter or trainer_cfg.get("adapter") is None):
            model = model.merge_and_unload()
        continuing = isinstance(model, PeftModel)
        if continuing:
            log.info("continuing the adapter of %s (%s)", start.step, start.key)
        adapter_cfg = trainer_cfg.get("adapter")
        peft_config = instantiate(adapter_cfg) if adapter_cfg and not continuing else None

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
        resume = resume_checkpoint(str(self.ctx.cfg.resume), checkpoints)
        if resume:
            log.info("resuming from %s", resume)
        result = trainer.train(resume_from_checkpoint=resume)
        in_sync = distributed.weights_in_sync(trainer.model)
        if distributed.is_main():
            save_model(trainer.model, tokenizer, backbone, out)
        losses = loss_history(trainer.state.log_history)
        return {
            "train_loss": float(result.training_loss),
            "loss_first": losses[0] if losses else None,
            "loss_last": losses[-1] if losses else None,
            "steps": int(trainer.state.global_step),
            "rows": len(dataset),
            "started_from": describe(start)["format"],
            "resumed_from_checkpoint": resume is not None,
            "world_size": distributed.world_size(),
            "ranks_in_sync": in_sync,
        }
