"""`python -m specalign.launch -n N [overrides]`: run the pipeline on N processes.

Each process would stamp its own Hydra run directory from the clock, so this resolves the
directory once and hands the same `hydra.run.dir` to every rank. Training steps then run
data-parallel on all ranks (gloo on CPU, nccl on GPUs); every other step, the store and W&B
belong to rank 0.

How the ranks start follows the composed `backbone.sharding`: `none` -> torchrun (plain
data parallel); `fsdp` / `zero3` -> `accelerate launch` with `launchers/<preset>.yaml`
(FSDP full shard, DeepSpeed ZeRO-3), whose environment the HF Trainer picks up. `--print`
shows the command instead of running it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

LAUNCHERS = Path(__file__).resolve().parent / "launchers"
PRESETS = {"fsdp": "fsdp.yaml", "zero3": "zero3.yaml"}


def run_dir_for(overrides: list[str]) -> str | None:
    if any(o.startswith("hydra.run.dir=") for o in overrides):
        return None
    root = os.environ.get("SPECALIGN_ROOT", "outputs")
    for override in overrides:
        if override.startswith("paths.root="):
            root = override.split("=", 1)[1]
    stamp = time.strftime("%Y-%m-%d/%H-%M-%S")
    return str(Path(root).expanduser().resolve() / "runs" / f"{stamp}-ddp")


def sharding_of(overrides: list[str]) -> str:
    """The composed `backbone.sharding` (`none` if the overrides do not compose: the run
    itself then reports what is wrong)."""
    from hydra import compose, initialize_config_dir

    from specalign import CONF

    plain = [o for o in overrides if not o.startswith("hydra")]
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return str(compose(config_name="config", overrides=plain).backbone.sharding)
    except Exception:
        return "none"


def preset_environment(sharding: str, num_processes: int, num_machines: int = 1) -> dict[str, str]:
    """What `accelerate launch --config_file launchers/<preset>.yaml` would export to each
    rank (ACCELERATE_* and FSDP_* variables, built by accelerate's own launcher code), for
    ranks that something else started: SLURM's tasks under hydra/launcher=slurm_multigpu.
    The HF Trainer's Accelerator reads them, so FSDP / ZeRO-3 shard the model there too."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    argv = ["--config_file", str(LAUNCHERS / PRESETS[sharding])]
    argv += ["--num_processes", str(num_processes), "--num_machines", str(num_machines)]
    args, defaults, mixed_from_config = _validate_launch_command(
        launch_command_parser().parse_args([*argv, "-m", "specalign"])
    )
    if args.use_deepspeed:  # as accelerate's launch_command does before its DeepSpeed launcher
        fields = list(defaults.deepspeed_config) if defaults else []
        fields += ["mixed_precision"] if mixed_from_config else []
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        env = prepare_deepspeed_cmd_env(args)[1]
    else:
        env = prepare_multi_gpu_env(args)
    return {k: v for k, v in env.items() if k.startswith(("ACCELERATE_", "FSDP_"))}


def command(nproc: int, overrides: list[str], sharding: str) -> list[str]:
    if sharding in PRESETS:
        preset = LAUNCHERS / PRESETS[sharding]
        starter = ["-m", "accelerate.commands.launch", "--config_file", str(preset)]
        starter += ["--num_processes", str(nproc)]
    else:
        starter = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return [sys.executable, *starter, "-m", "specalign", *overrides]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m specalign.launch", description=__doc__)
    parser.add_argument("-n", "--nproc-per-node", type=int, required=True)
    parser.add_argument("--print", action="store_true", help="print the command, run nothing")
    parser.add_argument("overrides", nargs=argparse.REMAINDER, help="Hydra overrides")
    args = parser.parse_args(argv)
    overrides = list(args.overrides)
    run_dir = run_dir_for(overrides)
    if run_dir is not None:
        overrides = [f"hydra.run.dir={run_dir}", *overrides]
    sharding = sharding_of(overrides)
    cmd = command(args.nproc_per_node, overrides, sharding)
    if args.print:
        print(" ".join(cmd))
        return 0
    how = f"accelerate ({sharding})" if sharding in PRESETS else "torchrun"
    print(f"launching {args.nproc_per_node} processes with {how}; run dir {run_dir or '(given)'}")
    sys.stdout.flush()
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
