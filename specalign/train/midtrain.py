"""Model Spec Midtraining: plain causal-LM training on `documents` (text that discusses the
spec), before any demonstrations (RESEARCH.md s.2).

Documents vary a lot in length, so they are packed: TRL's best-fit-decreasing packing puts
several documents in one row and, being padding-free, hands the model `position_ids` that
restart at 0 per document and no 2-D attention mask. transformers then builds a
block-diagonal causal mask, so a document never attends to its neighbours (checked by
tests/test_midtrain.py; benchmarks/bench_packing.py measures the speed-up). An optional
mix-in of rendered chat conversations keeps the model's chat format from eroding.
Like SFTStep, the step continues the adapter it receives (`new_adapter: true` merges it).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specalign.errors import ConfigError
from specalign.pipeline.step import Artifact, Step

if TYPE_CHECKING:
    from datasets import Dataset
    from trl import SFTConfig

log = logging.getLogger(__name__)
# torch, TRL, PEFT and datasets are imported inside functions: planning (dry runs, cached
# re-runs) only reads the step's class attributes and should not pay ~5 s of imports.

PACKING_STRATEGIES = ("bfd", "bfd_split")  # the padding-free ones: documents stay isolated


def mix_in_rows(documents: int, ratio: float) -> int:
    """How many mix-in rows make them `ratio` of the final dataset (rounded)."""
    if not 0.0 <= ratio < 1.0:
        raise ConfigError(f"mix_in.ratio={ratio}: must be in [0, 1). Fix: e.g. mix_in.ratio=0.1.")
    return round(ratio * documents / (1.0 - ratio))


def render_conversations(path: Path, backbone: Any, tokenizer: Any) -> list[str]:
    """Each `{messages}` row of a JSONL file as text in the backbone's chat format."""
    from specalign.pipeline.dataset_io import read_jsonl
    from specalign.synth.fixed_demonstrations import check_messages

    rows = read_jsonl(path, required=("messages",), key="mix_in.path")
    for number, row in enumerate(rows, start=1):
        check_messages(row["messages"], f"{path} row {number}")
    return [
        backbone.apply_chat_template(tokenizer, row["messages"], add_generation_prompt=False)
        for row in rows
    ]


def mix(documents: list[str], extra: list[str], ratio: float, seed: int) -> Dataset:
    """`{text, origin}` rows: all documents plus mix-in texts making `ratio` of the rows
    exactly (up to rounding), drawn without replacement while they last, then cycled, and
    shuffled with `seed` so the mix-in is spread over training rather than at the end."""
    from datasets import Dataset

    rng = random.Random(seed)
    wanted = mix_in_rows(len(documents), ratio) if extra else 0
    chosen: list[str] = []
    while len(chosen) < wanted:
        pool = list(extra)
        rng.shuffle(pool)
        chosen.extend(pool[: wanted - len(chosen)])
    rows = [{"text": t, "origin": "documents"} for t in documents]
    rows += [{"text": t, "origin": "mix_in"} for t in chosen]
    rng.shuffle(rows)
    return Dataset.from_list(rows)


def midtrain_config(
    settings: dict[str, Any],
    trainer_cfg: dict[str, Any],
    output_dir: Path,
    *,
    max_length: int,
    seed: int,
    report_to: str,
) -> SFTConfig:
    """The SFTConfig of a midtraining run: language modeling on `text`, packed padding-free
    unless `packing: false` (then padded batches with an attention mask)."""
    from trl import SFTConfig

    from specalign.train.training_args import training_kwargs

    packing = bool(settings.get("packing", True))
    strategy = str(settings.get("packing_strategy", "bfd_split"))  # bfd cuts long documents
    if packing and strategy not in PACKING_STRATEGIES:
        raise ConfigError(
            f"packing_strategy={strategy}: documents would attend to each other. "
            f"Fix: one of {', '.join(PACKING_STRATEGIES)}."
        )
    kwargs = training_kwargs(trainer_cfg, settings.get("args"), output_dir, seed, report_to)
    kwargs.setdefault("include_num_input_tokens_seen", "non_padding")
    return SFTConfig(
        **kwargs,
        dataset_text_field="text",
        max_length=max_length,
        packing=packing,
        packing_strategy=strategy,
        padding_free=packing,
        completion_only_loss=False,
    )


class MidtrainStep(Step):
    consumes = ("dataset",)
    optional = ("model",)
    produces = "model"
    uses = ("backbone", "trainer", "seed")
    all_ranks = True

    def texts(self, documents: Dataset, tokenizer: Any) -> Dataset:
        """The training rows: documents' `text`, plus the rendered mix-in if one is set."""
        mix_cfg = self.settings.get("mix_in") or {}
        path, ratio = mix_cfg.get("path"), float(mix_cfg.get("ratio", 0.0))
        extra: list[str] = []
        if path and ratio > 0:
            from specalign.spec import resolve_spec_file

            source = resolve_spec_file(path, key="mix_in.path")
            extra = render_conversations(source, self.ctx.backbone, tokenizer)
        return mix(list(documents["text"]), extra, ratio, seed=int(self.ctx.cfg.seed))

    def key_settings(self) -> dict[str, Any]:
        """The mix-in file enters the key by its hash (fingerprint), not its path."""
        settings = super().key_settings()
        if settings.get("mix_in"):
            settings = {**settings, "mix_in": {**settings["mix_in"], "path": None}}
        return settings

    def fingerprint(self) -> dict[str, Any]:
        path = (self.settings.get("mix_in") or {}).get("path")
        if not path:
            return {}
        from specalign.pipeline.keys import file_sha256
        from specalign.spec import resolve_spec_file

        return {"mix_in_sha256": file_sha256(resolve_spec_file(path, key="mix_in.path"))}

    def overflow(self, rows: Dataset, tokenizer: Any, args: Any) -> dict[str, int]:
        """Documents longer than max_length, and the tokens training never saw because of it:
        none with `bfd_split` (overflow becomes a row of its own); `bfd` and unpacked rows cut
        them, which is logged rather than silent."""
        lengths = [len(ids) for ids in tokenizer(list(rows["text"]))["input_ids"]]
        long = [n - args.max_length for n in lengths if n > args.max_length]
        cut = 0 if args.packing and args.packing_strategy == "bfd_split" else sum(long)
        if cut:
            log.warning(
                "%s: %d documents exceed max_length=%d; %d tokens cut (packing_strategy="
                "bfd_split keeps them)",
                self.name,
                len(long),
                args.max_length,
                cut,
            )
        return {"documents_over_max_length": len(long), "tokens_cut": cut}

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        from trl import SFTTrainer

        from specalign.pipeline.dataset_io import load_dataset
        from specalign.train.trainer_run import starting_model, train_and_save

        backbone, trainer_cfg = self.ctx.backbone, self.ctx.section("trainer")
        model, peft_config, base = starting_model(self, inputs)

        tokenizer = backbone.load_tokenizer()
        rows = self.texts(load_dataset(inputs["dataset"]), tokenizer)
        checkpoints = work / "checkpoints"
        args = midtrain_config(
            self.settings,
            trainer_cfg,
            checkpoints,
            max_length=int(self.settings.get("max_length", backbone.max_length)),
            seed=int(self.ctx.cfg.seed),
            report_to=self.ctx.tracker.report_to,
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=rows.select_columns(["text"]),
            processing_class=tokenizer,
            peft_config=peft_config,
        )
        metrics = train_and_save(self, trainer, tokenizer, inputs, out, checkpoints, base)
        return {
            **metrics,
            **self.overflow(rows, tokenizer, args),
            "rows": len(rows),
            "mix_in_rows": sum(origin == "mix_in" for origin in rows["origin"]),
            "packed_rows": len(trainer.train_dataset),
            "tokens_seen": int(trainer.state.num_input_tokens_seen),
            "packing": bool(args.packing),
        }
