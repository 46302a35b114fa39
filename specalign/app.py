"""The Hydra entry point: compose -> plan -> run (or print the plan) -> report.

`python -m specalign` with no overrides runs the default pipeline on the embedded backbone;
see conf/config.yaml for every choice and README.md for recipes.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from specalign import CONF
from specalign.errors import SpecAlignError
from specalign.pipeline import ArtifactStore, RunContext, build_plan, distributed, run_plan
from specalign.pipeline.runner import status
from specalign.report.run_summary import print_plan, write_failure, write_plan, write_summary
from specalign.report.sweep_callback import announce_member

log = logging.getLogger("specalign")
CONF_DIR = str(CONF)  # the repository's conf/, or its copy inside an installed wheel


def run(cfg: DictConfig, run_dir: Path | None, overrides: list[str] | None = None) -> list:
    """Compose-time work done: plan the stage, then run it (or only print the plan)."""
    # torchrun / SLURM tasks: join the process group first (sharded backbones: FSDP / ZeRO-3)
    distributed.init(cfg.rank_timeout_min, str(cfg.backbone.get("sharding", "none")))
    if not distributed.is_main():
        logging.getLogger("specalign").setLevel(logging.WARNING)  # rank 0 tells the story
    ctx = RunContext(cfg, run_dir=run_dir, overrides=tuple(overrides or ()))
    plan = build_plan(ctx)
    store = ArtifactStore(ctx.store_dir)
    if cfg.dry_run:
        states = status(plan, store)
        print_plan(plan, states, store)
        if run_dir is not None:
            write_plan(ctx, states, run_dir)
        return []
    log.info(
        "experiment %s: stage=%s spec=%s backbone=%s, %d steps, store %s",
        cfg.name,
        plan.stage,
        cfg.spec.id,
        cfg.backbone.name,
        len(plan.steps),
        store.root,
    )
    results = run_plan(plan, ctx)
    if run_dir is not None and distributed.is_main():
        write_summary(ctx, results, run_dir)
        ctx.tracker.member_run(ctx, results)  # the member's lineage and headline metrics
    return results


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    sweep = hydra_cfg.mode == RunMode.MULTIRUN
    if sweep:
        announce_member(hydra_cfg)
    try:
        run(cfg, run_dir, overrides)
    except SpecAlignError as err:
        log.error("%s", err)
        if sweep and distributed.is_main():  # the other members go on; the report names it
            write_failure(overrides, str(err), run_dir)
            return
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()
