"""How multi-process runs start: the sharding preset a backbone names picks the launcher, a
SLURM job's tasks become one process group, and ranks wait at barriers for as long as the
run says (rank 0 alone runs synthesis and evals)."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from helpers import REPO, cli_env

from specalign.pipeline import distributed


def printed(*overrides: str) -> str:
    cmd = [sys.executable, "-m", "specalign.launch", "-n", "4", "--print", *overrides]
    return subprocess.run(cmd, cwd=REPO, env=cli_env(Path("/tmp")), capture_output=True,
                          text=True, check=True, timeout=120).stdout  # fmt: skip


def test_the_backbones_sharding_preset_picks_the_launcher():
    fsdp = printed("backbone=qwen3_32b", "stage=sft").split()
    assert fsdp[1:3] == ["-m", "accelerate.commands.launch"]
    preset = Path(fsdp[fsdp.index("--config_file") + 1])
    assert preset.name == "fsdp.yaml" and preset.is_file()
    assert fsdp[fsdp.index("--num_processes") + 1] == "4"
    assert "FULL_STATE_DICT" in preset.read_text()  # save_model writes a loadable model
    plain = printed("backbone=qwen3_8b").split()
    assert plain[1:3] == ["-m", "torch.distributed.run"] and "--nproc_per_node=4" in plain
    assert any(a.startswith("hydra.run.dir=") for a in plain)  # one run dir for all ranks


def test_a_slurm_jobs_tasks_become_one_process_group(monkeypatch):
    distributed_env = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                       "MASTER_PORT")  # fmt: skip
    for name in distributed_env:  # set first: monkeypatch undoes only what it recorded
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    slurm = {"SLURM_NTASKS": "8", "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "4242",
             "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_NODELIST": "gpu[07-08]"}  # fmt: skip
    for name, value in slurm.items():
        monkeypatch.setenv(name, value)
    distributed.export_slurm_environment()
    assert (distributed.world_size(), distributed.rank(), distributed.is_main()) == (8, 5, False)
    import os

    assert os.environ["LOCAL_RANK"] == "1" and os.environ["LOCAL_WORLD_SIZE"] == "4"
    assert os.environ["MASTER_ADDR"] == "gpu07" and os.environ["MASTER_PORT"] == "24242"


def test_barriers_wait_as_long_as_the_run_says(monkeypatch):
    import torch.distributed as dist

    seen = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kwargs: seen.update(kwargs))
    distributed.init(timeout_min=90)
    assert seen["timeout"] == timedelta(minutes=90) and seen["backend"] == "gloo"


def test_the_default_timeout_is_far_longer_than_torchs(cfg_factory):
    assert cfg_factory().rank_timeout_min >= 12 * 60  # torch's default is 10 minutes


def test_slurm_tasks_of_a_sharded_backbone_get_accelerates_environment(monkeypatch):
    """hydra/launcher=slurm_multigpu starts one task per GPU, not `accelerate launch`: each
    task exports what accelerate would, from the same preset, so the Trainer shards."""
    import os

    from specalign.launch import preset_environment

    for name in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "1")
    keep = dict(os.environ)
    try:
        distributed.export_sharding_environment("fsdp")
        assert os.environ["ACCELERATE_USE_FSDP"] == "true"
        assert os.environ["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"  # a loadable save
        assert os.environ["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"
        assert os.environ["ACCELERATE_MIXED_PRECISION"] == "bf16"
        zero3 = preset_environment("zero3", 8)
        assert zero3["ACCELERATE_USE_DEEPSPEED"] == "true"
        assert zero3["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "3"
        assert zero3["ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL"] == "true"
    finally:
        os.environ.clear()
        os.environ.update(keep)
    distributed.export_sharding_environment("none")
    assert "ACCELERATE_USE_FSDP" not in os.environ
