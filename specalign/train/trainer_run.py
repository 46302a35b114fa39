"""What every training step does around its TRL trainer, kept in one place.

Before: pick the starting model (continue the adapter the step receives, or merge it and
start fresh with `new_adapter: true` or `trainer=full`) and the LoRA config of a fresh
adapter. After: train (resuming per `resume=`), check that all ranks agree, save on rank 0
and report the common metrics. Steps keep only what differs: their data and TRL config.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.utils import instantiate

from specalign.errors import ConfigError
from specalign.pipeline import distributed
from specalign.pipeline.step import Artifact, Step

log = logging.getLogger(__name__)


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


def starting_model(step: Step, inputs: dict[str, Artifact]) -> tuple[Any, Any, Any]:
    """(model to train, PEFT config for a fresh adapter or None when continuing one, the
    base the trained adapter will sit on: see model_artifact.base_of)."""
    from peft import PeftModel

    from specalign.train.model_artifact import base_of, load_model

    backbone, trainer_cfg = step.ctx.backbone, step.ctx.section("trainer")
    start = inputs.get("model")
    model = load_model(backbone, start, trainable=True, **quantization_config(trainer_cfg))
    fresh = bool(step.settings.get("new_adapter", False)) or trainer_cfg.get("adapter") is None
    if isinstance(model, PeftModel) and fresh:
        model = model.merge_and_unload()
    continuing = isinstance(model, PeftModel)
    if continuing:
        log.info("continuing the adapter of %s (%s)", start.step, start.key)
    adapter_cfg = trainer_cfg.get("adapter")
    peft_config = instantiate(adapter_cfg) if adapter_cfg and not continuing else None
    return model, peft_config, base_of(start, continuing)


def train_and_save(
    step: Step,
    trainer: Any,
    tokenizer: Any,
    inputs: dict[str, Artifact],
    out: Path,
    checkpoints: Path,
    base: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Train (resuming if asked), save on rank 0, return the metrics every step reports."""
    from specalign.pipeline.preemption import deferred_preemption, preemption_callback
    from specalign.train.model_artifact import describe, save_model
    from specalign.train.training_args import logged_series, resume_checkpoint

    resume = resume_checkpoint(str(step.ctx.cfg.resume), checkpoints)
    if resume:
        log.info("resuming from %s", resume)
    if trainer.args.disable_tqdm:  # no terminal: periodic progress lines, not per-step dicts
        from transformers.trainer_callback import PrinterCallback

        from specalign.progress import training_callback

        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(training_callback(step.name))
    with deferred_preemption() as deferring:  # a SLURM preemption saves a checkpoint first
        if deferring:
            trainer.add_callback(preemption_callback())
        result = trainer.train(resume_from_checkpoint=resume)
    in_sync = distributed.weights_in_sync(trainer.model)
    save_model(trainer.model, tokenizer, step.ctx.backbone, out, base, trainer=trainer)
    losses = logged_series(trainer.state.log_history, "loss")
    return {
        "train_loss": float(result.training_loss),
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "steps": int(trainer.state.global_step),
        "started_from": describe(inputs.get("model"))["format"],
        "resumed_from_checkpoint": resume is not None,
        "resumed_at_step": int(Path(resume).name.split("-")[-1]) if resume else 0,
        "world_size": distributed.world_size(),
        "ranks_in_sync": in_sync,
    }
