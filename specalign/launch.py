"""`python -m specalign.launch -n N [overrides]`: run the pipeline on N processes.

torchrun starts N copies of `python -m specalign`; each would stamp its own Hydra run
directory from the clock, so this resolves the directory once and hands the same
`hydra.run.dir` to every rank. Training steps then run data-parallel on all ranks (gloo on
CPU, nccl on GPUs); every other step, the store and W&B belong to rank 0.
For FSDP / DeepSpeed use `accelerate launch --config_file launchers/<preset>.yaml -m
specalign hydra.run.dir=... ...` the same way.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path


def run_dir_for(overrides: list[str]) -> str | None:
    if any(o.startswith("hydra.run.dir=") for o in overrides):
        return None
    root = os.environ.get("SPECALIGN_ROOT", "outputs")
    for override in overrides:
        if override.startswith("paths.root="):
            root = override.split("=", 1)[1]
    stamp = time.strftime("%Y-%m-%d/%H-%M-%S")
    return str(Path(root).expanduser().resolve() / "runs" / f"{stamp}-ddp")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m specalign.launch", description=__doc__)
    parser.add_argument("-n", "--nproc-per-node", type=int, required=True)
    parser.add_argument("overrides", nargs=argparse.REMAINDER, help="Hydra overrides")
    args = parser.parse_args(argv)
    overrides = list(args.overrides)
    run_dir = run_dir_for(overrides)
    if run_dir is not None:
        overrides = [f"hydra.run.dir={run_dir}", *overrides]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={args.nproc_per_node}",
        "-m",
        "specalign",
        *overrides,
    ]
    print(f"launching {args.nproc_per_node} processes; run dir {run_dir or '(given)'}", flush=True)
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
