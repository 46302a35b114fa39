"""The capability evaluator on the embedded SmolLM2-135M-Instruct (the Q4_1 GGUF, dequantized
to float32), next to the model's published numbers: is the evaluator's zero-shot lm-eval
setup in the range others report, on a CPU-sized fixed sample of each task?

Prints, per task, acc and acc_norm with Wilson 95% CIs and n, the ARC average (the model
card reports "ARC (Average)"), the published figures, and the wall time of the evaluation
(model load and GGUF conversion excluded). Results go to benchmarks/results/capability_smollm2.json.
Usage:
  HF_HUB_OFFLINE=1 python benchmarks/capability_smollm2.py [--limit 100] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
TASKS = ["arc_easy", "arc_challenge", "piqa", "hellaswag", "sciq", "copa"]

# Published numbers (percent). Model card of HuggingFaceTB/SmolLM2-135M-Instruct, "Evaluation":
# lighteval, zero-shot, the Instruct model (the base model's row in brackets); the card does
# not say which accuracy variant, and gives ARC only as the ARC-E/ARC-C average.
CARD_INSTRUCT = {"hellaswag": 40.9, "arc_average": 37.3, "piqa": 66.3}
CARD_BASE = {"hellaswag": 42.1, "arc_average": 43.9, "piqa": 68.4}
# A third-party lm-eval 0-shot baseline of SmolLM2-135M-Instruct (the "Baseline" column of
# huggingface.co/lldois/SmolLM2-135M-Reasoning-SLERP-Champion): (metric, percent).
LM_EVAL_THIRD_PARTY = {
    "arc_challenge": ("acc_norm", 27.73),
    "arc_easy": ("acc", 54.12),
    "hellaswag": ("acc_norm", 42.99),
    "piqa": ("acc_norm", 66.92),
}


def published(task: str) -> str:
    cells = []
    key = "arc_average" if task == "arc_average" else task
    if key in CARD_INSTRUCT:
        cells.append(f"card {CARD_INSTRUCT[key]:.1f} (base {CARD_BASE[key]:.1f})")
    if task in LM_EVAL_THIRD_PARTY:
        metric, value = LM_EVAL_THIRD_PARTY[task]
        cells.append(f"lm-eval 3rd-party {metric} {value:.2f}")
    return "; ".join(cells) or "none found"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=100, help="documents per task")
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cache-dir", default=None, help="backbone conversions (default: temp)")
    args = parser.parse_args()

    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from specalign.eval.capability import Capability
    from specalign.eval.evaluator import EvalRun, EvalSubject
    from specalign.eval.records import records_of
    from specalign.eval.stats import wilson

    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="specalign-bench-")
    started = time.perf_counter()
    backbone = instantiate(
        OmegaConf.load(REPO / "conf/backbone/smollm2_135m.yaml"), cache_dir=cache_dir
    )
    model, tokenizer = backbone.load_model().eval(), backbone.load_tokenizer()
    load_s = time.perf_counter() - started

    evaluator = Capability(
        "capability", tasks=args.tasks, limit=args.limit, batch_size=args.batch_size
    )
    items = evaluator.select([])
    log_dir = Path(tempfile.mkdtemp(prefix="specalign-capability-"))
    subject = EvalSubject("smollm2_135m", model, tokenizer, backbone)
    started = time.perf_counter()
    result = evaluator.evaluate(EvalRun(subject, items, log_dir, spec=None))
    eval_s = time.perf_counter() - started

    records = {r.metric: r for r in records_of("capability", result.measures)}
    rows = []
    for task in args.tasks:
        row = {"task": task, "n": records[f"{task}/acc"].n}
        for metric in ("acc", "acc_norm"):
            rec = records.get(f"{task}/{metric}")
            row[metric] = None if rec is None else [rec.value, rec.ci_low, rec.ci_high]
        rows.append(row)
    if {"arc_easy", "arc_challenge"} <= set(args.tasks):  # the card's "ARC (Average)"
        arc = {"task": "arc_average"}
        for metric in ("acc", "acc_norm"):
            parts = [records[f"{t}/{metric}"] for t in ("arc_easy", "arc_challenge")]
            arc["n"] = sum(p.n for p in parts)
            # with the same n per task (limit <= 299, ARC-C's size) the average of the two
            # rates is the pooled rate, so the pooled Wilson interval is its CI
            hits = sum(p.value * p.n for p in parts)
            low, high = wilson(hits, sum(p.n for p in parts))
            arc[metric] = [sum(p.value for p in parts) / 2, low, high]
        rows.append(arc)

    def cell(value: list[float] | None) -> str:
        return "-" if value is None else f"{value[0]:.3f} [{value[1]:.3f}, {value[2]:.3f}]"

    print(f"\nSmolLM2-135M-Instruct (Q4_1 GGUF, dequantized), lm-eval 0-shot, limit {args.limit}")
    print(f"{'task':<14} {'n':>4}  {'acc [95% CI]':<24} {'acc_norm [95% CI]':<24} published")
    for row in rows:
        print(
            f"{row['task']:<14} {row['n']:>4}  {cell(row['acc']):<24} "
            f"{cell(row['acc_norm']):<24} {published(row['task'])}"
        )
    print(f"evaluation {eval_s:.1f} s for {len(items)} documents (model load {load_s:.1f} s)")

    out = {
        "backbone": "smollm2_135m",
        "limit": args.limit,
        "tasks": rows,
        "documents": len(items),
        "eval_seconds": round(eval_s, 1),
        "load_seconds": round(load_s, 1),
        "batch_size": args.batch_size,
        "fingerprint": evaluator.fingerprint(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "inspect_log": str(log_dir / "inspect" / "capability.eval"),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "capability_smollm2.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
