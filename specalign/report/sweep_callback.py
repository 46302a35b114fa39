"""The Hydra callback of every `--multirun` (conf/config.yaml: hydra.callbacks.sweep).

- Before the sweep: the members it will run are written to `<sweep dir>/members.json`, so
  each member, when it starts, logs which one it is and how many there are.
- After a dry run: each distinct step (key) is listed once with the members that share it
  (report/sweep_plan.py): the shared work, visible before anything runs.
- After a run: the sweep's report (report/build.py): report.md, figures, the same to W&B.
  Members that stopped on a user error are named, and the sweep exits with code 2.

Launchers that run members elsewhere (submitit: local processes, SLURM jobs) call these in
the process that launched the sweep, after every member has finished.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("specalign")
MEMBERS = "members.json"


def sweep_members(config: DictConfig) -> list[list[str]]:
    """The override list of each member, as the basic sweeper expands them (its sweep
    params from the preset, then the command line's); [] when they cannot be expanded."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()]
    arguments += list(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
    try:
        parsed = OverridesParser.create().parse_overrides(arguments)
        batches = BasicSweeper.split_arguments(parsed, None)
    except Exception:  # another sweeper's syntax (e.g. optuna ranges): no count, no harm
        return []
    return [list(member) for batch in batches for member in batch]


def announce_member(hydra_cfg: Any) -> None:
    """`sweep member 2 of 4: spec=pro_affordability stage=sft (2 after it)`."""
    num = int(hydra_cfg.job.num)
    path = Path(str(hydra_cfg.sweep.dir)) / MEMBERS
    members = json.loads(path.read_text()) if path.is_file() else []
    choices = " ".join(hydra_cfg.overrides.task)
    if members:
        left = len(members) - num - 1
        log.info("sweep member %d of %d: %s (%d after it)", num + 1, len(members), choices, left)
    else:
        log.info("sweep member #%d: %s", num, choices)


class SweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        members = sweep_members(config)
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / MEMBERS).write_text(json.dumps(members, indent=1))
        if members:
            log.info("sweep of %d members -> %s", len(members), sweep_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from specalign.errors import SpecAlignError
        from specalign.report.members import load_sweep

        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            sweep = load_sweep(sweep_dir)
        except SpecAlignError as err:
            log.error("%s", err)
            sys.exit(err.exit_code)
        if config.dry_run:
            from specalign.report.sweep_plan import print_sweep_plan

            print_sweep_plan(sweep)
        elif OmegaConf.select(config, "report.at_sweep_end", default=True):
            from specalign.report.build import write_report

            try:
                write_report(sweep, tracker_cfg=OmegaConf.to_container(config.logger, resolve=True))
            except SpecAlignError as err:
                log.error("the sweep's report: %s", err)
        failed = [m for m in sweep.members if m.failed]
        for member in failed:
            log.error("sweep member #%d (%s) stopped: %s", member.num, member.label, member.failed)
        if failed:
            sys.exit(2)
