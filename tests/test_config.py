"""Composition: every option of every group composes, the CLI behaves as documented, and
what libraries receive are plain containers."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import CONF, compose_config, run_cli
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

GROUPS = [
    "spec",
    "backbone",
    "synthesizer",
    "annotator",
    "stage",
    "trainer",
    "eval",
    "trace",
    "logger",
    "paths",
    "experiment",
]
MISSION_STAGES = {"msm", "sft", "dpo", "msm+sft", "specalign", "trace"}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_of_every_group_composes(group, tmp_path):
    assert options(group), f"conf/{group}/ is empty"
    for option in options(group):
        cfg = compose_config([f"{group}={option}", f"paths.root={tmp_path}"])
        OmegaConf.resolve(cfg)  # every interpolation resolves
        if group not in ("experiment", "paths"):
            assert cfg[group] is not None


def test_every_launcher_composes(tmp_path):
    launchers = sorted(p.stem for p in (CONF / "hydra" / "launcher").glob("*.yaml"))
    assert {"slurm", "local_submitit"} <= set(launchers)
    for launcher in [*launchers, "basic"]:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(
                "config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True
            )
        assert cfg.hydra.launcher._target_.startswith("hydra")


def test_mission_stages_exist():
    assert set(options("stage")) >= MISSION_STAGES


def test_default_is_the_most_complete_pipeline():
    cfg = compose_config()
    assert (cfg.spec.id, cfg.stage.name, cfg.backbone.name) == (
        "pro_america",
        "msm+sft",
        "smollm2_135m",
    )
    assert cfg.logger.mode == "offline"


def test_cfg_job_prints_config_without_loading_anything(tmp_path):
    proc = run_cli(
        tmp_path,
        "spec=pro_america",
        "backbone=qwen3_32b",
        "stage=msm+sft",
        flags=("--cfg", "job"),
        timeout=60,
    )
    printed = OmegaConf.create(proc.stdout)
    assert printed.backbone.source == "Qwen/Qwen3-32B"
    assert printed.stage.name == "msm+sft"
    assert not (tmp_path / "store").exists() and not (tmp_path / "cache").exists()


def test_unknown_option_lists_the_options(tmp_path):
    proc = run_cli(tmp_path, "backbone=nope", check=False, timeout=60)
    assert proc.returncode != 0
    err = proc.stderr
    assert "Could not find 'backbone/nope'" in err
    for option in ("smollm2_135m", "tiny_random", "qwen3_32b"):
        assert option in err


def test_groups_name_classes_and_hand_libraries_plain_containers(tmp_path):
    cfg = compose_config([f"paths.root={tmp_path}"])
    lora = instantiate(cfg.trainer.adapter)
    assert type(lora).__name__ == "LoraConfig"
    assert type(lora.target_modules) in (list, set) and "q_proj" in lora.target_modules
    for group in ("backbone", "logger", "synthesizer"):
        assert "_target_" in cfg[group], f"conf/{group} must name its class"
    for name, step in cfg.stage.steps.items():  # null: a step the composition removed
        assert step is None or "_target_" in step, f"stage step {name} must name its class"
    assert cfg.stage.steps.documents is not None


def test_experiment_presets_compose(tmp_path):
    debug = compose_config(["experiment=debug", f"paths.root={tmp_path}"])
    assert debug.backbone.name == "tiny_random" and debug.name == "debug"
    cheese = compose_config(["experiment=cheese_generalization"])
    assert cheese.name == "cheese_generalization"


def test_dry_run_plans_without_running(tmp_path):
    proc = run_cli(tmp_path, "dry_run=true", "logger=none", timeout=120)
    assert "plan for stage=msm+sft" in proc.stdout
    assert "8 of 8 steps to run" in proc.stdout  # composed documents: no hierarchy steps
    assert not list(Path(tmp_path / "store").glob("*/*/manifest.json"))


def test_cheese_preset_sweeps_both_specs(tmp_path):
    proc = run_cli(
        tmp_path,
        "experiment=cheese_generalization",
        "dry_run=true",
        "logger=none",
        flags=("--multirun",),
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert "spec=pro_america" in output and "spec=pro_affordability" in output
    assert proc.stdout.count("plan for stage=msm+sft") == 6  # 2 specs x 3 seeds
