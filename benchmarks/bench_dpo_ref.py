"""DPO step time and peak memory: cached reference log-probs vs plain TRL with a reference
forward every step, side by side in one run.

Same pairs (tests/data/pairs.jsonl), same LoRA, DPOConfig, seed and number of steps. The
cached arm pays its one-time reference pass (timed separately) and then trains with
`precompute_ref_log_probs` reading the columns; the plain arm is TRL's default for PEFT, the
reference being the policy with the adapter disabled, run each step. Each arm runs in its own
subprocess so peak memory is its own: CUDA `max_memory_allocated` on a GPU, else the
process's peak RSS (`resource.getrusage(RUSAGE_SELF).ru_maxrss`, which includes the model
load and Python itself). Results go to benchmarks/results/dpo_ref.json.
Usage:
  python benchmarks/bench_dpo_ref.py [--backbone smollm2_135m] [--steps 8] [--batch-size 4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
PAIRS = REPO / "tests" / "data" / "pairs.jsonl"
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))


def arm(name: str, backbone_name: str, steps: int, batch_size: int, data: Path) -> dict[str, Any]:
    """Train `steps` DPO steps one way; per-step wall times and peak memory."""
    import torch
    from datasets import Dataset
    from helpers import compose_config
    from hydra.utils import instantiate
    from transformers import TrainerCallback
    from trl import DPOTrainer

    from specalign.pipeline.context import RunContext
    from specalign.synth.fixed_pairs import to_pair
    from specalign.train.dpo import cached_ref_trainer_class, dpo_config
    from specalign.train.ref_logps import reference_logps

    root = Path(tempfile.mkdtemp())
    ctx = RunContext(
        compose_config([f"paths.root={root}", "logger=none", f"backbone={backbone_name}"])
    )
    backbone, trainer_cfg = ctx.backbone, ctx.section("trainer")
    rows = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]
    pairs = Dataset.from_list([to_pair(r, "bench", "0" * 12, "pairs") for r in rows])
    settings = {
        "args": {
            "per_device_train_batch_size": batch_size,
            "max_steps": steps,
            "save_steps": 10_000,
            "learning_rate": 1e-4,
        }
    }

    def trainer(dataset: Dataset, cls: type, precompute: bool) -> Any:
        args = dpo_config(
            settings, trainer_cfg, root / name, max_length=512, seed=0, report_to="none"
        )
        args.precompute_ref_log_probs = precompute
        return cls(
            model=backbone.load_model(),
            args=args,
            train_dataset=dataset,
            processing_class=backbone.load_tokenizer(),
            peft_config=instantiate(trainer_cfg["adapter"]),
        )

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    if name == "ref":  # the one-time pass, in its own process so it is not in "cached"'s peak
        start = time.perf_counter()
        ref = trainer(pairs, cached_ref_trainer_class(), precompute=True)
        chosen, rejected = reference_logps(ref, batch_size=16)
        dataset = pairs.add_column("ref_chosen_logps", chosen)
        dataset.add_column("ref_rejected_logps", rejected).save_to_disk(str(data))
        return {"arm": name, "ref_pass_s": time.perf_counter() - start}
    if name == "cached":
        run = trainer(Dataset.load_from_disk(str(data)), cached_ref_trainer_class(), True)
    else:
        run = trainer(pairs, DPOTrainer, precompute=False)

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
            if cuda:
                torch.cuda.synchronize()
            self.begin = time.perf_counter()

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            if cuda:
                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self.begin)

    clock = Clock()
    run.add_callback(clock)
    if cuda:
        torch.cuda.reset_peak_memory_stats()  # training only: the ref pass is timed above
    run.train()
    losses = [e["loss"] for e in run.state.log_history if "loss" in e]
    return {
        "arm": name,
        "step_seconds": clock.times,
        "median_step_s": statistics.median(clock.times[1:] or clock.times),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "peak_memory_mb": (
            torch.cuda.max_memory_allocated() / 2**20
            if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        ),
        "memory_kind": "cuda max_memory_allocated (training)" if cuda else "process peak RSS",
        "device": torch.cuda.get_device_name() if cuda else f"cpu x{os.cpu_count()}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tiny_random")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--arm", choices=["ref", "cached", "plain"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.arm:  # child process: one arm, JSON on the last line
        print(json.dumps(arm(opts.arm, opts.backbone, opts.steps, opts.batch_size, opts.data)))
        return
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    arms = {}
    data = Path(tempfile.mkdtemp()) / "pairs_with_ref"
    for name in ("ref", "cached", "plain"):
        cmd = [
            sys.executable,
            __file__,
            "--arm",
            name,
            "--backbone",
            opts.backbone,
            "--steps",
            str(opts.steps),
            "--batch-size",
            str(opts.batch_size),
            "--data",
            str(data),
        ]
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        arms[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        arms[name]["process_wall_s"] = time.perf_counter() - start
    cached, plain = arms["cached"], arms["plain"]
    cached["ref_pass_s"] = arms.pop("ref")["ref_pass_s"]
    result = {
        "backbone": opts.backbone,
        "steps": opts.steps,
        "batch_size": opts.batch_size,
        "rows": sum(1 for line in PAIRS.read_text().splitlines() if line.strip()),
        "python": platform.python_version(),
        "arms": arms,
        "step_time_ratio_plain_over_cached": plain["median_step_s"] / cached["median_step_s"],
        "peak_memory_ratio_plain_over_cached": plain["peak_memory_mb"] / cached["peak_memory_mb"],
        "ref_pass_in_plain_steps": cached["ref_pass_s"] / plain["median_step_s"],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dpo_ref.json").write_text(json.dumps(result, indent=2))
    for name, a in arms.items():
        print(
            f"{name:7s} median step {a['median_step_s']:.3f} s  peak {a['peak_memory_mb']:.0f} MB"
            f" ({a['memory_kind']})  ref pass {a.get('ref_pass_s', 0):.2f} s  loss "
            f"{a['loss_first']:.4f} -> {a['loss_last']:.4f}"
        )
    print(
        f"plain/cached: step time x{result['step_time_ratio_plain_over_cached']:.2f}, "
        f"peak memory x{result['peak_memory_ratio_plain_over_cached']:.2f}; the one-time ref "
        f"pass costs {result['ref_pass_in_plain_steps']:.1f} plain steps"
    )


if __name__ == "__main__":
    main()
