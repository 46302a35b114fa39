"""Midtraining throughput: packed (padding-free BFD) vs unpacked (padded) batches, in one run.

Same variable-length documents (token lengths drawn uniformly in [--min-len, --max-len]),
same number of optimizer steps and rows per step, the step's own SFTConfig
(`specalign.train.midtrain.midtrain_config`) with LoRA; reports non-pad tokens/s of each
and the ratio. Non-pad tokens are the trainer's own count (`num_input_tokens_seen`,
"non_padding"). Results go to benchmarks/results/packing.json.
Usage:
  python benchmarks/bench_packing.py [--backbone smollm2_135m] [--docs 64] [--steps 6]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
DOCUMENTS = REPO / "tests" / "data" / "documents.jsonl"


def documents(tokenizer: Any, n: int, low: int, high: int, seed: int) -> list[list[int]]:
    """Token ids of n documents with seeded lengths in [low, high], cut from real text (so
    both arms see identical tokens, and no document holds a pad token)."""
    text = " ".join(json.loads(line)["text"] for line in DOCUMENTS.read_text().splitlines())
    ids = [i for i in tokenizer(text)["input_ids"] if i != tokenizer.pad_token_id]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = rng.randint(low, high)
        start = rng.randrange(0, len(ids) - length)
        out.append(ids[start : start + length])
    return out


def train(ctx: Any, docs: list[list[int]], packing: bool, args: argparse.Namespace) -> dict:
    from datasets import Dataset
    from hydra.utils import instantiate
    from trl import SFTTrainer

    from specalign.train.midtrain import midtrain_config

    backbone, trainer_cfg = ctx.backbone, ctx.section("trainer")
    step_args = {
        "per_device_train_batch_size": args.batch_size,
        "max_steps": args.steps,
        "save_strategy": "no",
        "logging_steps": 1,
    }
    config = midtrain_config(
        {"packing": packing, "args": step_args},
        trainer_cfg,
        Path(tempfile.mkdtemp(prefix="bench-packing-")),
        max_length=args.max_length,
        seed=0,
        report_to="none",
    )
    config.save_strategy = "no"
    trainer = SFTTrainer(
        model=backbone.load_model(),
        args=config,
        train_dataset=Dataset.from_dict({"input_ids": docs}),
        processing_class=backbone.load_tokenizer(),
        peft_config=instantiate(trainer_cfg["adapter"]),
    )
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    tokens = int(trainer.state.num_input_tokens_seen)
    return {
        "packing": packing,
        "rows": len(trainer.train_dataset),
        "steps": int(trainer.state.global_step),
        "non_pad_tokens": tokens,
        "seconds": round(seconds, 2),
        "tokens_per_s": round(tokens / seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backbone", choices=["smollm2_135m", "tiny_random"], default="tiny_random"
    )
    parser.add_argument("--docs", type=int, default=64)
    parser.add_argument("--min-len", type=int, default=16)
    parser.add_argument("--max-len", type=int, default=512)
    parser.add_argument("--max-length", type=int, default=512, help="packed row length")
    parser.add_argument("--batch-size", type=int, default=4, help="rows per optimizer step")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--cache-dir", default=None, help="backbone conversions (default: temp)")
    args = parser.parse_args()

    import torch
    from hydra import compose, initialize_config_dir

    from specalign.pipeline.context import RunContext

    root = args.cache_dir or tempfile.mkdtemp(prefix="specalign-bench-")
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            "config",
            [f"backbone={args.backbone}", "trainer=lora", "logger=none", f"paths.root={root}"]
            + ([f"paths.cache={args.cache_dir}"] if args.cache_dir else []),
        )
    ctx = RunContext(cfg)
    docs = documents(ctx.backbone.load_tokenizer(), args.docs, args.min_len, args.max_len, 0)
    unpacked = train(ctx, docs, packing=False, args=args)
    packed = train(ctx, docs, packing=True, args=args)
    result = {
        "backbone": args.backbone,
        "settings": vars(args),
        "document_tokens": sum(len(d) for d in docs),
        "unpacked": unpacked,
        "packed": packed,
        "ratio_tokens_per_s": round(packed["tokens_per_s"] / unpacked["tokens_per_s"], 2),
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "packing.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
