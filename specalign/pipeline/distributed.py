"""Multi-process runs (torchrun / accelerate launch): who does what.

Every rank plans the same steps and keys. A step that trains runs on all ranks (the
trainer does the data parallelism); any other step runs on rank 0 while the others wait.
Only rank 0 takes store locks, writes artifacts and manifests, and talks to W&B; the
barriers around each step make the other ranks read what rank 0 committed.
"""

from __future__ import annotations

import os
import re
from typing import Any


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: `gpu[03-05,09],cpu1` -> `gpu03`."""
    head = re.match(r"[^,\[]+(\[[^\]]*\])?", nodelist.strip())
    if not head:
        raise ValueError(f"cannot read the SLURM node list {nodelist!r}")
    name, _, ranges = head.group(0).partition("[")
    return name + re.split(r"[-,]", ranges)[0] if ranges else name


def export_slurm_environment() -> None:
    """A SLURM job with several tasks (`hydra/launcher=slurm_multigpu`: one task per GPU) is a
    multi-process run: give each task the variables torchrun would set, so `init` joins
    them into one process group and the HF Trainer puts rank k on GPU `LOCAL_RANK`."""
    env = os.environ
    if "WORLD_SIZE" in env or int(env.get("SLURM_NTASKS", "1")) <= 1:
        return
    nodes = int(env.get("SLURM_JOB_NUM_NODES", env.get("SLURM_NNODES", "1")))
    env["WORLD_SIZE"] = env["SLURM_NTASKS"]
    env["RANK"] = env["SLURM_PROCID"]
    env["LOCAL_RANK"] = env.get("SLURM_LOCALID", "0")
    env["LOCAL_WORLD_SIZE"] = str(int(env["SLURM_NTASKS"]) // max(nodes, 1))
    env.setdefault("MASTER_ADDR", first_host(env.get("SLURM_JOB_NODELIST", "127.0.0.1")))
    env.setdefault("MASTER_PORT", str(20000 + int(env.get("SLURM_JOB_ID", "0")) % 40000))


def export_sharding_environment(sharding: str) -> None:
    """Ranks that SLURM started (not `accelerate launch`) of a backbone that shards
    (`backbone.sharding: fsdp|zero3`) get the environment accelerate would have given them,
    so the Trainer shards the model as it does under `python -m specalign.launch`."""
    from specalign.launch import PRESETS, preset_environment

    started_by_accelerate = (
        "ACCELERATE_USE_FSDP" in os.environ or "ACCELERATE_USE_DEEPSPEED" in os.environ
    )
    if sharding not in PRESETS or world_size() == 1 or started_by_accelerate:
        return
    nodes = int(os.environ.get("SLURM_JOB_NUM_NODES", os.environ.get("SLURM_NNODES", "1")))
    os.environ.update(preset_environment(sharding, world_size(), nodes))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def init(timeout_min: float = 720, sharding: str = "none") -> None:
    """Join the process group torchrun set up (gloo on CPU, nccl on GPUs) once per process,
    before the first barrier; the HF Trainer then reuses it. `timeout_min` bounds how long a
    rank waits at a barrier: the other ranks wait there while rank 0 alone runs a synthesis
    or eval step (or waits on another job's lock), which takes far longer than torch's
    10-minute default. `sharding`: the backbone's FSDP / ZeRO-3 preset, for SLURM's ranks."""
    export_slurm_environment()
    export_sharding_environment(sharding)
    if world_size() == 1:
        return
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if torch.cuda.is_available() else "gloo",
            timeout=timedelta(minutes=float(timeout_min)),
        )


def broadcast(value: Any) -> Any:
    """Rank 0's value on every rank (the value itself in a single process)."""
    if world_size() == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if world_size() > 1:
        import torch.distributed as dist

        dist.barrier()


def weights_in_sync(model) -> bool:
    """Whether every rank holds the same trainable weights (a data-parallel sanity check)."""
    if world_size() == 1:
        return True
    import torch
    import torch.distributed as dist

    local = (
        torch.stack([p.detach().double().sum() for p in model.parameters() if p.requires_grad])
        .sum()
        .cpu()
        .reshape(1)
    )
    gathered = [torch.zeros_like(local) for _ in range(world_size())]
    dist.all_gather(gathered, local)
    return all(torch.allclose(g, gathered[0], rtol=0, atol=1e-9) for g in gathered)
