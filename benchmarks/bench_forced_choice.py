"""Forced-choice scoring: our batched scorer vs lm-eval's HFLM on the same requests and model.

The requests are the forced-choice evaluator's own: each shipped item of the cheese specs
in both option orders, the prompt rendered with the backbone's chat template, one request
per option. Both arms score identical token sequences (our `encode_pair` encoding, handed
to `HFLM._loglikelihood_tokens`, the method behind `loglikelihood`; lm-eval's own string
encoding would move the template's trailing newline into the continuation), so their
log-likelihoods should agree to float noise. Reports requests/s per arm (ours, ours with
every request its own row, lm-eval), the ratio to lm-eval, and the largest absolute
disagreement in log-likelihood.
Usage:
  python benchmarks/bench_forced_choice.py [--backbone smollm2_135m] [--items 40] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
ITEMS = ["cheese_generalization.jsonl", "eval/cheese_values_balanced.jsonl"]


def requests(backbone, tokenizer, n_items: int) -> list[tuple[str, str]]:
    from specalign.eval.forced_choice import swapped
    from specalign.pipeline.dataset_io import read_jsonl
    from specalign.spec import resolve_spec_file

    items = [row for name in ITEMS for row in read_jsonl(resolve_spec_file(name), (), "items")]
    out = []
    for item in items[:n_items]:
        for prompt in (item["prompt"], swapped(item["prompt"], item["choices"])):
            chat = [{"role": "user", "content": prompt}]
            text = backbone.apply_chat_template(tokenizer, chat, add_generation_prompt=True)
            out += [(text, option) for option in item["options"]]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backbone", choices=["smollm2_135m", "tiny_random"], default="smollm2_135m"
    )
    parser.add_argument("--items", type=int, default=40, help="items (x2 orders x2 options)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3, help="runs per arm (median)")
    parser.add_argument("--cache-dir", default=None, help="backbone conversions (default: temp)")
    args = parser.parse_args()

    import torch
    from hydra.utils import instantiate
    from lm_eval.models.huggingface import HFLM
    from omegaconf import OmegaConf

    from specalign.llm.scoring import continuation_logprobs, encode_pair, separate_logprobs

    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="specalign-bench-")
    backbone = instantiate(
        OmegaConf.load(REPO / f"conf/backbone/{args.backbone}.yaml"), cache_dir=cache_dir
    )
    model, tokenizer = backbone.load_model().eval(), backbone.load_tokenizer()
    reqs = requests(backbone, tokenizer, args.items)
    prompts, options = [p for p, _ in reqs], [o for _, o in reqs]
    continuation_logprobs(model, tokenizer, prompts[:4], options[:4], args.batch_size)  # warm-up

    pairs = [encode_pair(tokenizer, p, o) for p, o in reqs]
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=args.batch_size, device="cpu")
    encoded = [((p, o), ids[:-n], ids[-n:]) for (p, o), (ids, n) in zip(reqs, pairs, strict=True)]
    arms = {
        "ours": lambda: continuation_logprobs(model, tokenizer, prompts, options, args.batch_size),
        "ours_one_row_per_request": lambda: separate_logprobs(
            model, tokenizer, pairs, args.batch_size
        ),
        "lm_eval": lambda: lm._loglikelihood_tokens(encoded, disable_tqdm=True),
    }
    seconds: dict[str, list[float]] = {name: [] for name in arms}
    outputs: dict[str, list] = {}
    for _ in range(args.repeat):  # arms interleaved, so machine noise hits them alike
        for name, arm in arms.items():
            started = time.perf_counter()
            outputs[name] = arm()
            seconds[name].append(time.perf_counter() - started)
    median = {name: statistics.median(times) for name, times in seconds.items()}
    ours = [sum(x) for x in outputs["ours"]]
    theirs = [ll for ll, _ in outputs["lm_eval"]]

    diffs = [abs(a - b) for a, b in zip(ours, theirs, strict=True)]
    result = {
        "backbone": args.backbone,
        "requests": len(reqs),
        "items": args.items,
        "batch_size": args.batch_size,
        "repeat": args.repeat,
        **{f"{name}_requests_per_s": round(len(reqs) / t, 2) for name, t in median.items()},
        "speedup_vs_lm_eval": round(median["lm_eval"] / median["ours"], 2),
        "seconds": seconds,
        "max_abs_loglik_diff": max(diffs),
        "mean_abs_loglik_diff": sum(diffs) / len(diffs),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "forced_choice.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
