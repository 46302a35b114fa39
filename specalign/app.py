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
from omegaconf import DictConfig

from specalign import CONF
from specalign.errors import SpecAlignError
from specalign.pipeline import ArtifactStore, RunContext, build_plan, distributed, run_plan
from specalign.pipeline.runner import status
from specalign.report.run_summary import print_plan, write_summary

log = logging.getLogger("specalign")
CONF_DIR = str(CONF)  # the repository's conf/, or its copy inside an installed wheel


def run(cfg: DictConfig, run_dir: Path | None) -> list:
    """Compose-time work done: plan the stage, then run it (or only print the plan)."""
    distributed.init(cfg.rank_timeout_min)  # torchrun: join the process group first
    if not distributed.is_main():
        logging.getLogger("specalign").setLevel(logging.WARNING)  # rank 0 tells the story
    ctx = RunContext(cfg, run_dir=run_dir)
    plan = build_plan(ctx)
    store = ArtifactStore(ctx.store_dir)
    if cfg.dry_run:
        print_plan(plan, status(plan, store), store)
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
        write_summary(cfg, results, run_dir)
    return results


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        run(cfg, run_dir)
    except SpecAlignError as err:
        log.error("%s", err)
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()
