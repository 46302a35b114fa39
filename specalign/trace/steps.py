"""The impact and trace steps of stage=trace (conf/stage/trace.yaml).

Both build the same TRL trainer over the same LoRA adapter (the trace group's `lora`
overrides on the trainer group's adapter, seeded alike), so the impact scores are taken
for the parameters the trace step then trains.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from specalign.errors import ConfigError, SpecAlignError
from specalign.pipeline import distributed
from specalign.pipeline.step import Artifact, Step

log = logging.getLogger(__name__)
IMPACT_DEFAULTS = {"method": "jvp", "gold_size": 64, "batch_size": 8, "fd_step": 1e-3}


def trace_section(step: Step) -> dict[str, Any]:
    cfg = step.ctx.section("trace")
    if not cfg:
        raise ConfigError("stage=trace needs the trace group. Fix: trace=trace (conf/trace/).")
    return dict(cfg)


def adapter_config(step: Step, peft_config: Any) -> Any:
    """The fresh adapter's config with the trace group's `lora` overrides (r, alpha, modules)."""
    for key, value in (trace_section(step).get("lora") or {}).items():
        setattr(peft_config, key, list(value) if key == "target_modules" else value)
    return peft_config


def build_trainer(
    step: Step, inputs: dict[str, Artifact], dataset: Any, work: Path, **extra: Any
) -> tuple[Any, Any, Any]:
    """(TraceTrainer on a fresh or continued adapter, its DPOConfig, the model's base) built
    alike by both steps; transformers' seed is set first so the adapter starts the same."""
    from transformers import set_seed

    from specalign.trace.trainer import trace_trainer_class
    from specalign.train.dpo import check_reference, dpo_config
    from specalign.train.trainer_run import starting_model

    backbone, trainer_cfg = step.ctx.backbone, step.ctx.section("trainer")
    trace = trace_section(step)
    max_length = int(step.settings.get("max_length", backbone.max_length))
    check_reference(inputs["dataset"], inputs.get("model"), max_length)
    seed = int(step.ctx.cfg.seed)
    set_seed(seed)
    model, peft_config, base = starting_model(step, inputs)
    if peft_config is not None:
        peft_config = adapter_config(step, peft_config)
    args = dpo_config(
        {**step.settings, "beta": float(trace["beta"])},
        trainer_cfg,
        work / "checkpoints",
        max_length=max_length,
        seed=seed,
        report_to=extra.pop("report_to", "none"),
    )
    trainer = trace_trainer_class()(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=backbone.load_tokenizer(),
        peft_config=peft_config,
        **extra,
    )
    trainer.trace_beta = float(trace["beta"])
    trainer.trace_alpha_kl = float(trace.get("alpha_kl", 0.0))
    return trainer, args, base


def loader(trainer: Any, dataset: Any, batch_size: int) -> Any:
    from torch.utils.data import DataLoader

    return DataLoader(
        trainer._remove_unused_columns(dataset),
        batch_size=batch_size,
        collate_fn=trainer.data_collator,
        shuffle=False,
    )


class ImpactScores(Step):
    """Adds `impact` (<g_J, g_k>), `impact_weight` (clamped, L1-normalized over INVERT u
    PUNISH; RETAIN 0) and `gold` (whether the pair is in the gold batch) to each pair."""

    consumes = ("dataset",)
    optional = ("model",)
    produces = "dataset"
    uses = ("backbone", "trainer", "seed")
    # every rank, like ReferenceLogProbs: building TRL's trainer passes its main_process_first
    # barriers; each rank computes the same scores, rank 0 saves them
    all_ranks = True

    def fingerprint(self) -> dict[str, Any]:
        """Of the trace group only what the scores depend on (beta, the adapter), so every
        variant of a sweep shares one impact artifact."""
        trace = trace_section(self)
        return {"beta": trace["beta"], "lora": trace.get("lora")}

    def setting(self, key: str) -> Any:
        return self.settings.get(key, IMPACT_DEFAULTS[key])

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        import torch
        from datasets import Dataset

        from specalign.pipeline.dataset_io import load_dataset, save_dataset
        from specalign.trace import impact

        method = str(self.setting("method"))
        scorer = impact.score_fn(method)
        rows = load_dataset(inputs["dataset"]).to_list()
        if "triage" not in rows[0]:
            raise SpecAlignError(f"impact: {inputs['dataset'].step} has no `triage` labels.")
        beta = float(trace_section(self)["beta"])
        seed = int(self.ctx.cfg.seed)
        gold = impact.gold_batch(rows, int(self.setting("gold_size")), seed)
        conflicts = impact.conflict_rows(rows)
        if not conflicts:
            log.warning("%s: no INVERT or PUNISH pair: nothing to weight", self.name)
        trainer, _, _ = build_trainer(
            self,
            inputs,
            Dataset.from_list(conflicts or impact.conflict_rows([{**rows[0], "triage": "INVERT"}])),
            work,
            eval_dataset=Dataset.from_list(gold),
        )
        model = trainer.model.eval()
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        names, params = [n for n, _ in named], [p for _, p in named]
        size = int(self.setting("batch_size"))
        started = time.perf_counter()
        g = impact.gold_gradient(model, params, loader(trainer, trainer.eval_dataset, size), beta)
        gold_seconds = time.perf_counter() - started
        batches = loader(trainer, trainer.train_dataset, size) if conflicts else []
        started = time.perf_counter()
        if method == "jvp":
            scores = scorer(model, names, params, g, batches, beta)
        elif method == "finite_difference":
            scores = scorer(model, params, g, batches, beta, float(self.setting("fd_step")))
        else:
            scores = scorer(model, params, g, batches, beta)
        score_seconds = time.perf_counter() - started
        if len(scores) != len(conflicts):  # TRL dropped rows: the pairs would not line up
            raise SpecAlignError(
                f"impact: {len(conflicts) - len(scores)} conflict pairs were dropped in "
                "tokenization (prompt alone fills max_length). Fix: give impact the max_length "
                "of ref_logps, which drops them first."
            )
        weights, informative = impact.normalized_weights(scores)
        if conflicts and not informative:
            log.warning("%s: no pair has a positive impact score; weights are uniform", self.name)
        gold_prompts = {str(p["prompt"]) for p in gold}
        scored = iter(zip(scores, weights, strict=True))
        for row in rows:
            row["gold"] = str(row["prompt"]) in gold_prompts
            if row["triage"] in impact.CONFLICTS:
                row["impact"], row["impact_weight"] = next(scored)
            else:
                row["impact"], row["impact_weight"] = 0.0, 0.0
        if distributed.is_main():
            save_dataset(Dataset.from_list(rows), out)
        positive = sum(s > 0 for s in scores)
        upstream = inputs["dataset"].manifest.get("metrics", {})
        log.info(
            "%s: %d conflict pairs scored by %s in %.1f s, %d with positive impact",
            self.name,
            len(scores),
            method,
            score_seconds,
            positive,
        )
        del model, trainer
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return {
            "rows": len(rows),
            "method": method,
            "scored": len(scores),
            "positive": positive,
            "weights_informative": informative,
            "gold_size": len(gold),
            **{f"gold/{k.lower()}": sum(p["gold_of"] == k for p in gold) for k in impact.LABEL_SET},
            "gold_gradient_norm": impact.dot(g, g) ** 0.5,
            "seconds_gold_gradient": gold_seconds,
            "seconds_scores": score_seconds,
            "reference": upstream.get("reference"),
            "max_length": upstream.get("max_length"),
        }


class TraceStep(Step):
    """Re-align on the triaged, impact-weighted pairs under the trace group's variant."""

    consumes = ("dataset",)
    optional = ("model",)
    produces = "model"
    uses = ("backbone", "trainer", "seed", "trace")
    all_ranks = True

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        from collections import Counter

        from datasets import Dataset
        from peft import PeftModel

        from specalign.pipeline.dataset_io import load_dataset
        from specalign.trace.objective import TERMS
        from specalign.trace.variants import training_rows
        from specalign.train.trainer_run import train_and_save
        from specalign.train.training_args import logged_series

        trace = trace_section(self)
        rows = training_rows(load_dataset(inputs["dataset"]).to_list(), trace)
        if not rows:
            raise SpecAlignError(
                f"trace={trace['name']}: no pair is trained on under this variant."
            )
        terms = Counter(row["trace_term"] for row in rows)
        trainer, args, base = build_trainer(
            self, inputs, Dataset.from_list(rows), work, report_to=self.ctx.tracker.report_to
        )
        kl_rows = terms[TERMS["kl"]] and trainer.trace_alpha_kl > 0
        if kl_rows and not isinstance(trainer.model, PeftModel):
            raise ConfigError(
                "trace: the KL term's reference is the model with its adapter disabled, "
                "so it needs trainer=lora (or trace.alpha_kl=0 / trace.retain=none)."
            )
        started = time.perf_counter()
        metrics = train_and_save(
            self,
            trainer,
            self.ctx.backbone.load_tokenizer(),
            inputs,
            out,
            work / "checkpoints",
            base,
        )
        seconds = time.perf_counter() - started
        logs = trainer.state.log_history
        names = {v: k for k, v in TERMS.items()}
        vocab = int(trainer.model.config.vocab_size)
        kl_seconds, kl_tokens = trainer.kl_reference_seconds, trainer.kl_reference_tokens
        series = {name: logged_series(logs, f"trace/{name}") for name in TERMS}
        return {
            **metrics,
            "variant": trace["name"],
            "rows": len(rows),
            **{f"rows/{names[t]}": n for t, n in sorted(terms.items())},
            **{f"{name}_first": s[0] for name, s in series.items() if s},
            **{f"{name}_last": s[-1] for name, s in series.items() if s},
            "beta": float(trace["beta"]),
            "alpha_kl": float(trace.get("alpha_kl", 0.0)),
            "weights": trace["weights"],
            "learning_rate": float(args.learning_rate),
            # the KL reference: computed on the fly vs what caching its logits would store
            "kl_reference_seconds": round(kl_seconds, 2),
            "kl_reference_share_of_training": round(kl_seconds / max(seconds, 1e-9), 3),
            "kl_reference_cache_mb": round(kl_tokens * vocab * 4 / 2**20, 1),
        }
