"""TRACE impact scores: batched directional derivatives vs per-sample gradients.

<g_J, g_k> for N conflicting pairs, on the same model, adapter (LoRA r 32 / alpha 16 on q, v),
gold gradient and batches, by the pipeline's own functions (specalign/trace/impact.py):
`per_sample` (one backward pass per pair: the reference), `jvp` (one forward-mode pass per
batch) and `finite_difference` (two forward passes per batch). Each method runs in its own
process, so its peak memory is its own. Reports seconds to score, the time ratio to
per_sample, peak RSS above the loaded model, and Spearman / max relative error against
per_sample. Pairs: the policy-shift benchmark's INVERT / PUNISH pairs, cycled with varied
openings up to N.
Usage:
  python benchmarks/bench_impact.py [--backbone smollm2_135m] [--pairs 256] [--batch-size 8]
                                    [--max-length 128]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("per_sample", "jvp", "finite_difference")
OPENINGS = ("", "Please help: ", "Quick question. ", "Hi! ", "I was wondering: ", "Hello. ")


def benchmark_rows() -> list[dict]:
    """The policy-shift pairs with their by-construction triage labels."""
    from specalign.trace.labels import label_of

    path = REPO / "specalign" / "specs" / "trace" / "harm_shift_pairs.jsonl"
    rows = [json.loads(line) for line in path.open()]
    return [{**r, "triage": label_of(r["chosen_violates"], r["rejected_violates"])} for r in rows]


def conflict_pairs(n: int) -> list[dict]:
    from specalign.trace.labels import label_of

    rows = [r for r in benchmark_rows() if r["chosen_violates"]]  # INVERT and PUNISH
    out = []
    for i in range(n):
        row = rows[i % len(rows)]
        opening = OPENINGS[(i // len(rows)) % len(OPENINGS)] + " " * (i // (len(rows) * 6))
        out.append(
            {
                "prompt": [{"role": "user", "content": opening + row["prompt"]}],
                "chosen": [{"role": "assistant", "content": row["chosen"]}],
                "rejected": [{"role": "assistant", "content": row["rejected"]}],
                "chosen_violates": True,
                "rejected_violates": row["rejected_violates"],
                "triage": label_of(True, row["rejected_violates"]),
                "ref_chosen_logps": 0.0,  # unused: scores are taken at the reference itself
                "ref_rejected_logps": 0.0,
            }
        )
    return out


def child(args: argparse.Namespace) -> None:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import set_seed

    sys.path.insert(0, str(REPO / "tests"))
    from helpers import compose_config

    from specalign.pipeline.context import RunContext
    from specalign.trace import impact
    from specalign.trace.steps import loader
    from specalign.trace.trainer import trace_trainer_class
    from specalign.train.dpo import dpo_config

    torch.set_num_threads(args.threads)
    ctx = RunContext(compose_config([f"backbone={args.backbone}", "logger=none"]))
    rows = conflict_pairs(args.pairs)
    gold = impact.gold_batch(benchmark_rows(), 24, seed=0)
    set_seed(0)
    trainer = trace_trainer_class()(
        model=ctx.backbone.load_model(),
        args=dpo_config({}, ctx.section("trainer"), Path(args.work) / "t",
                        max_length=args.max_length, seed=0, report_to="none"),
        train_dataset=Dataset.from_list(impact.conflict_rows(rows)),
        eval_dataset=Dataset.from_list(gold),
        processing_class=ctx.backbone.load_tokenizer(),
        peft_config=LoraConfig(r=32, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                               lora_dropout=0.0, task_type="CAUSAL_LM"),
    )  # fmt: skip
    model = trainer.model.eval()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    names, params = [n for n, _ in named], [p for _, p in named]
    g = impact.gold_gradient(model, params, loader(trainer, trainer.eval_dataset, 8), 0.3)
    batches = list(loader(trainer, trainer.train_dataset, args.batch_size))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    if args.method == "jvp":
        scores = impact.jvp_scores(model, names, params, g, batches, 0.3)
    elif args.method == "finite_difference":
        scores = impact.finite_difference_scores(model, params, g, batches, 0.3, 1e-3)
    else:
        scores = impact.per_sample_scores(model, params, g, batches, 0.3)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    Path(args.out).write_text(json.dumps({
        "seconds": seconds, "scores": scores, "peak_rss_mb": peak / 1024,
        "peak_above_model_mb": (peak - before) / 1024,
        "trainable_parameters": sum(p.numel() for p in params),
    }))  # fmt: skip


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="smollm2_135m")
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--method", choices=METHODS)
    parser.add_argument("--out")
    parser.add_argument("--work")
    args = parser.parse_args()
    if args.method:
        return child(args)
    runs = {}
    with tempfile.TemporaryDirectory() as work:
        for method in METHODS:
            out = Path(work) / f"{method}.json"
            subprocess.run(
                [sys.executable, __file__, "--method", method, "--out", str(out), "--work", work,
                 "--backbone", args.backbone, "--pairs", str(args.pairs),
                 "--batch-size", str(args.batch_size), "--threads", str(args.threads),
                 "--max-length", str(args.max_length)],
                check=True,
            )  # fmt: skip
            runs[method] = json.loads(out.read_text())
    reference = runs["per_sample"]["scores"]
    scale = max(abs(s) for s in reference) or 1.0
    result = {
        "backbone": args.backbone,
        "pairs": args.pairs,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "scored": len(reference),
        "trainable_parameters": runs["per_sample"]["trainable_parameters"],
        "methods": {
            method: {
                "seconds": round(run["seconds"], 2),
                "time_ratio_to_per_sample": round(
                    run["seconds"] / runs["per_sample"]["seconds"], 3
                ),
                "peak_rss_mb": round(run["peak_rss_mb"], 1),
                "peak_above_model_mb": round(run["peak_above_model_mb"], 1),
                "spearman_vs_per_sample": round(spearman(reference, run["scores"]), 5),
                "max_error_rel_to_max_score": max(
                    abs(a - b) for a, b in zip(reference, run["scores"], strict=True)
                )
                / scale,
            }
            for method, run in runs.items()
        },
        "machine": platform.machine(),
        "threads": args.threads,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "impact.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
