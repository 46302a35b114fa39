"""Constrained vs unconstrained generation on the same structured requests and model.

The requests are the pipeline's own: the LLM annotator's prompt for each rule of a spec
(an object with five enums, two bounded strings, a boolean and a number) and SpecAlign's
planner prompt for sub-spec instances of those rules (a target rule among the instance's
ids, and a strategy). Each arm generates every request once, sampled with the same seed:
`none` (ask for JSON, parse), `llguidance` and `xgrammar` (decode under the schema). Reports
per arm and kind the share of replies that pass the pipeline's own validator, seconds per
request, and each engine's time ratio to `none`. Arms are interleaved over repeats.
Usage:
  python benchmarks/bench_constrained.py [--backbone smollm2_135m] [--rules 8] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
ENGINES = ("none", "llguidance", "xgrammar")


def requests(spec_name: str, n_rules: int) -> dict[str, tuple[list, Any, Any]]:
    """kind -> (chats, schema per chat, parse) built by the pipeline's own code."""
    from specalign.llm.structured import json_object
    from specalign.spec import load_named_spec
    from specalign.spec.annotate import annotation_schema, prompt, validate
    from specalign.synth.exchanges import SpecText, parse_plan, plan_schema
    from specalign.synth.prompts import PromptTemplate

    spec = load_named_spec(spec_name)
    rules = list(spec.rules)[:n_rules]
    annotation = (
        [[{"role": "user", "content": prompt(rule)}] for rule in rules],
        [annotation_schema()] * len(rules),
        lambda text: validate(json_object(text)),
    )
    planner = PromptTemplate.load("planner", "specalign/planner.txt", "bench")
    text = SpecText(spec, 0)
    ids = [rule.id for rule in rules]
    instances = [ids[i : i + 4] + ids[: max(0, i + 4 - len(ids))] for i in range(len(ids))]
    known = {rule.id for rule in spec.rules}
    plans = (
        [
            planner.render(
                **text.vars,
                rules=text.rules_block(inst),
                rule_ids=", ".join(inst),
                seed_prompt=text.seed_prompt({"instance_id": f"i{n}", "rule_ids": inst}, 0),
                experience="(none yet)",
            )
            for n, inst in enumerate(instances)
        ],
        [plan_schema(inst, 120) for inst in instances],
        lambda reply: parse_plan(reply, known, 5, 120),
    )
    return {"annotation": annotation, "planner": plans}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backbone", choices=["smollm2_135m", "tiny_random"], default="smollm2_135m"
    )
    parser.add_argument("--spec", default="pro_america")
    parser.add_argument("--rules", type=int, default=8, help="annotation and planner requests")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=1, help="runs per arm (median time)")
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
    first = HFBackend(backbone=backbone, batch_size=args.batch_size)
    arms = {}
    for engine in ENGINES:  # one loaded model; a backend (and its compiled grammars) per arm
        arm = HFBackend(backbone=backbone, batch_size=args.batch_size, constrained_decoding=engine)
        arm.model, arm.tokenizer = first.model, first.tokenizer
        arms[engine] = arm
    sampling = {"temperature": 1.0, "top_p": 0.95, "max_new_tokens": args.max_new_tokens}
    kinds = requests(args.spec, args.rules)
    seconds: dict[str, dict[str, list[float]]] = {e: {k: [] for k in kinds} for e in ENGINES}
    valid: dict[str, dict[str, float]] = {e: {} for e in ENGINES}
    compile_s: dict[str, float] = {}
    for engine in ENGINES[1:]:  # grammar compilation, once per schema, timed on its own
        started = time.perf_counter()
        for _, schemas, _ in kinds.values():
            for schema in schemas:
                arms[engine].grammars.compile(schema)
        compile_s[engine] = round(time.perf_counter() - started, 3)
    for rep in range(args.repeat):
        for kind, (chats, schemas, parse) in kinds.items():
            for engine, llm in arms.items():  # interleaved: machine noise hits arms alike
                started = time.perf_counter()
                replies = llm.generate(chats, {**sampling, "seed": rep}, schema=schemas)
                seconds[engine][kind].append((time.perf_counter() - started) / len(chats))
                ok = 0
                for reply in replies:
                    try:
                        parse(reply.text)
                        ok += 1
                    except (ValueError, TypeError, KeyError):
                        pass
                valid[engine][kind] = valid[engine].get(kind, 0) + ok / len(chats) / args.repeat
    per_request = {e: {k: statistics.median(t) for k, t in ks.items()} for e, ks in seconds.items()}
    result = {
        "backbone": args.backbone,
        "spec": args.spec,
        "requests_per_kind": {k: len(v[0]) for k, v in kinds.items()},
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "repeat": args.repeat,
        "valid_rate": {e: {k: round(v, 3) for k, v in ks.items()} for e, ks in valid.items()},
        "seconds_per_request": {
            e: {k: round(v, 3) for k, v in ks.items()} for e, ks in per_request.items()
        },
        "time_ratio_vs_none": {
            e: {k: round(per_request[e][k] / per_request["none"][k], 2) for k in kinds}
            for e in ENGINES[1:]
        },
        "grammar_compile_s": compile_s,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "constrained.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
