"""DPO on preference pairs with TRL's DPOTrainer, reading the reference log-probs that
`ReferenceLogProbs` cached in the dataset, so no reference forward runs while training.

TRL 1.16 facts this relies on (trl/trainer/dpo_trainer.py, dpo_config.py):
- `DPOConfig(precompute_ref_log_probs=True)` makes `_compute_loss` read `ref_chosen_logps` /
  `ref_rejected_logps` from the batch (the collator passes those columns through, and they are
  signature columns, so `remove_unused_columns` keeps them). With it and no `ref_model`, TRL
  loads no reference model for full fine-tuning.
- TRL would still recompute them at init (`_precompute_ref_logps`, into a `datasets` cache
  file); `CachedRefDPOTrainer` skips that when the columns are already there.
- `loss_type` is a list combined with `loss_weights`; `"sft"` is the mean token NLL of the
  chosen completion. Joint SFT+DPO (SpecAlign's 1:3) maps `sft_ratio=r` onto
  `loss_type=["sigmoid", "sft"]`, `loss_weights=[1 - r, r]`: both terms on the same batches,
  weighted, not a mix of separate SFT and DPO rows.
- Given a PeftModel with a trained adapter, TRL copies it into a frozen "ref" adapter; given a
  fresh `peft_config`, the reference is the adapter disabled. Either way the policy starts
  equal to the reference `ReferenceLogProbs` used, so the first sigmoid loss is log 2.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from specalign.errors import ConfigError, SpecAlignError
from specalign.pipeline.step import Artifact, Step

log = logging.getLogger(__name__)
# torch, TRL, PEFT and datasets are imported inside functions: planning only reads attributes.

REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
DPO_DEFAULTS = {"beta": 0.1, "loss_type": "sigmoid", "sft_ratio": 0.0}


def loss_terms(settings: dict[str, Any]) -> dict[str, Any]:
    """`loss_type` / `loss_weights` for DPOConfig, with `sft_ratio` mapped onto TRL's "sft" term."""
    loss_type = str(settings.get("loss_type", DPO_DEFAULTS["loss_type"]))
    ratio = float(settings.get("sft_ratio", DPO_DEFAULTS["sft_ratio"]))
    if not 0.0 <= ratio < 1.0:
        raise ConfigError(f"dpo.sft_ratio={ratio}: must be in [0, 1). Fix: e.g. 0.25 for 1:3.")
    if ratio == 0.0:
        return {"loss_type": [loss_type], "loss_weights": None}
    if loss_type == "sft":
        raise ConfigError("dpo.loss_type=sft with sft_ratio>0 has no preference term. Fix one.")
    return {"loss_type": [loss_type, "sft"], "loss_weights": [1.0 - ratio, ratio]}


def dpo_config(
    settings: dict[str, Any],
    trainer_cfg: dict[str, Any],
    output_dir: Path,
    *,
    max_length: int,
    seed: int,
    report_to: str,
) -> Any:
    """The DPOConfig both ReferenceLogProbs and DPOStep build, so they tokenize, truncate and
    autocast alike (the cached numbers are only valid under the same settings)."""
    from trl import DPOConfig

    from specalign.train.training_args import training_kwargs

    return DPOConfig(
        **training_kwargs(trainer_cfg, settings.get("args"), output_dir, seed, report_to),
        max_length=max_length,
        beta=float(settings.get("beta", DPO_DEFAULTS["beta"])),
        precompute_ref_log_probs=True,
        **loss_terms(settings),
    )


@functools.cache
def cached_ref_trainer_class() -> type:
    """DPOTrainer that trusts ref columns already in the dataset instead of recomputing them.

    Without the columns it returns the dataset untouched: ReferenceLogProbs builds the trainer
    only for its tokenization, collator and `compute_ref_log_probs`, and fills them itself."""
    from trl import DPOTrainer

    class CachedRefDPOTrainer(DPOTrainer):
        def _precompute_ref_logps(self, dataset: Any, name: str, batch_size: int) -> Any:
            return dataset

    return CachedRefDPOTrainer


def reference_of(model: Artifact | None) -> str:
    """Which policy the reference log-probs come from: `backbone` or `<step>/<key>`."""
    return "backbone" if model is None else f"{model.step}/{model.key}"


def check_reference(dataset: Artifact, start: Artifact | None, max_length: int) -> None:
    """Cached ref log-probs are only valid for the model and max_length they were made with."""
    metrics = dataset.manifest.get("metrics", {})
    if "reference" not in metrics:
        raise SpecAlignError(
            f"dpo: input dataset {dataset.step} has no cached reference log-probs. Fix: wire "
            "`inputs: {dataset: <a ReferenceLogProbs step>}` in the stage."
        )
    if metrics["reference"] != reference_of(start):
        raise SpecAlignError(
            f"dpo: reference log-probs of {dataset.step} were computed with "
            f"{metrics['reference']}, but this step starts from {reference_of(start)}. Fix: "
            "give both steps the same `model` input."
        )
    if int(metrics.get("max_length", max_length)) != max_length:
        raise SpecAlignError(
            f"dpo: {dataset.step} used max_length={metrics['max_length']}, this step "
            f"{max_length}. Fix: set the same max_length on both steps."
        )


class DPOStep(Step):
    consumes = ("dataset",)
    optional = ("model",)
    produces = "model"
    uses = ("backbone", "trainer", "seed")
    all_ranks = True

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        from specalign.pipeline.dataset_io import load_dataset
        from specalign.train.trainer_run import starting_model, train_and_save
        from specalign.train.training_args import logged_series

        backbone, trainer_cfg = self.ctx.backbone, self.ctx.section("trainer")
        start = inputs.get("model")
        max_length = int(self.settings.get("max_length", backbone.max_length))
        check_reference(inputs["dataset"], start, max_length)
        dataset = load_dataset(inputs["dataset"])
        missing = [c for c in REF_COLUMNS if c not in dataset.column_names]
        if missing:
            raise SpecAlignError(f"dpo: {inputs['dataset'].step} lacks columns {missing}.")

        model, peft_config, base = starting_model(self, inputs)

        checkpoints = work / "checkpoints"
        args = dpo_config(
            self.settings,
            trainer_cfg,
            checkpoints,
            max_length=max_length,
            seed=int(self.ctx.cfg.seed),
            report_to=self.ctx.tracker.report_to,
        )
        tokenizer = backbone.load_tokenizer()
        trainer = cached_ref_trainer_class()(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
        )
        metrics = train_and_save(self, trainer, tokenizer, inputs, out, checkpoints, base)
        logs = trainer.state.log_history
        accuracy = logged_series(logs, "rewards/accuracies")
        margins = logged_series(logs, "rewards/margins")
        return {
            **metrics,
            "reward_accuracy_first": accuracy[0] if accuracy else None,
            "reward_accuracy_last": accuracy[-1] if accuracy else None,
            "reward_margin_first": margins[0] if margins else None,
            "reward_margin_last": margins[-1] if margins else None,
            "loss_type": list(args.loss_type),
            "loss_weights": list(args.loss_weights) if args.loss_weights else None,
            "beta": float(args.beta),
            "rows": len(dataset),
        }
