"""HFBackend throughput: batched vs one request at a time, on the same prompts in one run.

Rows: greedy generation (samples/s) and continuation scoring (items/s), each batched
(`--batch-size`) and one at a time, with the ratio. No request cache, so every row pays.
Usage:
  python benchmarks/bench_llm_hf.py [--backbone smollm2_135m] [--n 16] [--max-new-tokens 32]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
TOPICS = ["cheese", "trains", "rain", "chess", "bread", "rivers", "owls", "glass"]


def chats(n: int) -> list[list[dict[str, str]]]:
    """Prompts of varied length, as a synthesis step would send."""
    return [
        [{"role": "user", "content": f"Tell me about {TOPICS[i % 8]}." + " Be specific." * (i % 5)}]
        for i in range(n)
    ]


def timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backbone", choices=["smollm2_135m", "tiny_random"], default="smollm2_135m"
    )
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cache-dir", default=None, help="backbone conversions (default: temp)")
    args = parser.parse_args()

    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from specalign.llm.hf_backend import HFBackend

    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="specalign-bench-")
    backbone = instantiate(
        OmegaConf.load(REPO / f"conf/backbone/{args.backbone}.yaml"), cache_dir=cache_dir
    )
    batched = HFBackend(backbone=backbone, batch_size=args.batch_size)
    started = time.perf_counter()
    batched.model, batched.tokenizer  # noqa: B018 - load outside the timed rows
    load_s = time.perf_counter() - started
    single = HFBackend(backbone=backbone, batch_size=1)
    single.model, single.tokenizer = batched.model, batched.tokenizer

    prompts = chats(args.n)
    greedy = {"temperature": 0.0, "max_new_tokens": args.max_new_tokens}
    batched.generate(prompts[:2], greedy)  # warm-up (first-call allocations)
    outputs: dict[str, list[Any]] = {}
    gen_b = timed(lambda: outputs.setdefault("b", batched.generate(prompts, greedy)))
    gen_s = timed(
        lambda: outputs.setdefault("s", [single.generate([c], greedy)[0] for c in prompts])
    )
    same = [c.text for c in outputs["b"]] == [c.text for c in outputs["s"]]
    new_tokens = sum(c.completion_tokens for c in outputs["b"])

    conts = [c.text or " ok" for c in outputs["b"]]  # score each prompt's own greedy answer
    score_b = timed(lambda: batched.score(prompts, conts))
    score_s = timed(lambda: [single.score([p], [c]) for p, c in zip(prompts, conts, strict=True)])

    n = args.n
    result = {
        "backbone": args.backbone,
        "n": n,
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "new_tokens_total": new_tokens,
        "model_load_s": round(load_s, 2),
        "generate_batched_samples_per_s": round(n / gen_b, 3),
        "generate_single_samples_per_s": round(n / gen_s, 3),
        "generate_speedup": round(gen_s / gen_b, 2),
        "greedy_outputs_identical": same,
        "score_batched_items_per_s": round(n / score_b, 3),
        "score_single_items_per_s": round(n / score_s, 3),
        "score_speedup": round(score_s / score_b, 2),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "llm_hf.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
