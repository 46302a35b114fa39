"""W&B tracking: group = experiment, job_type = step, one run per computed step.

The run id is derived from (experiment, step key), so a step killed and re-run (a requeued
SLURM job included) resumes the same W&B run. Each sweep member adds a `member` run to the
group: its choices flat at the top of the config and its lineage (every step, computed here
or reused, with the run that made it), so a group shows every member's full history even
when the steps were computed by another experiment. A report adds a `report` run with its
tables and figures. Nothing secret is logged: configs come from the resolved key material
and the command-line choices (no environment, no keys); W&B reads credentials from its own
login/env.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from specalign.pipeline.keys import content_key
from specalign.report.members import choices
from specalign.tracking.run_config import flat_config, lineage, lineage_summary

log = logging.getLogger(__name__)


def table_of(rows: list[dict[str, Any]]) -> Any:
    """Rows (dicts with the same keys) as a W&B table; non-scalar cells as JSON text."""
    import json

    import wandb

    columns = list(dict.fromkeys(k for row in rows for k in row))
    data = [
        [
            v if v is None or isinstance(v, str | int | float | bool) else json.dumps(v)
            for v in (row.get(c) for c in columns)
        ]
        for row in rows
    ]
    return wandb.Table(columns=columns, data=data)


class WandbStepRun:
    def __init__(self, run: Any) -> None:
        self.run = run
        self.run_id: str = run.id

    def log_table(self, name: str, rows: list[dict[str, Any]]) -> None:
        """Rows as a W&B table; lists and dicts become JSON text so every cell renders."""
        self.run.log({name: table_of(rows)})

    def finish(self, metrics: dict[str, Any], manifest: dict[str, Any]) -> None:
        scalars = {k: v for k, v in metrics.items() if isinstance(v, int | float | str | bool)}
        self.run.summary.update(scalars)
        self.run.config.update({"manifest": manifest}, allow_val_change=True)


class WandbTracker:
    report_to = "wandb"  # TRL trainers log into the step's active run

    def __init__(
        self,
        mode: str = "offline",
        project: str = "specalign",
        entity: str | None = None,
        dir: str = "outputs/wandb",
        tags: list[str] | None = None,
    ) -> None:
        self.mode = mode
        self.project = project
        self.entity = entity
        self.dir = Path(dir)
        self.tags = list(tags or [])

    def init(self, **kwargs: Any) -> Any:
        import wandb

        self.dir.mkdir(parents=True, exist_ok=True)
        return wandb.init(
            project=self.project,
            entity=self.entity,
            mode=self.mode,
            dir=str(self.dir),
            resume="allow",
            reinit="finish_previous",
            **kwargs,
        )

    @contextmanager
    def step_run(self, ctx: Any, planned: Any) -> Iterator[WandbStepRun]:
        # TRL / transformers' WandbCallback logs into the active run; keep it from
        # uploading checkpoints (which can be large) unless the user asks for it.
        os.environ.setdefault("WANDB_LOG_MODEL", "false")
        experiment = str(ctx.cfg.name)
        run = self.init(
            id=content_key({"experiment": experiment, "key": planned.key}),
            group=experiment,
            job_type=planned.name,
            name=f"{experiment}/{planned.name}",
            tags=[*self.tags, str(ctx.cfg.stage.name)],
            config={
                **flat_config(ctx),
                "step": planned.name,
                "key": planned.key,
                **planned.material,
            },
        )
        log.info("W&B run %s (%s, %s mode)", run.id, experiment, self.mode)
        try:
            yield WandbStepRun(run)
        except BaseException:
            run.finish(exit_code=1)
            raise
        run.finish()

    def member_run(self, ctx: Any, results: list[Any]) -> None:
        """A `member` run in the experiment's group: the member's choices flat in its config,
        its lineage (a table, and `lineage/<step>/...` summary entries naming each artifact's
        key and the run that made it) and the headline metrics of its eval steps."""
        experiment, flat = str(ctx.cfg.name), flat_config(ctx)
        rows = lineage(results)
        metrics = {
            f"{r.name}/{k}": v
            for r in results
            if r.artifact.kind == "metrics"  # an eval step: its flat headline metrics
            for k, v in r.metrics.items()
            if isinstance(v, int | float)
        }
        label = " ".join(f"{k}={v}" for k, v in flat.items() if k != "experiment")
        chosen = " ".join(
            f"{k}={v}" for k, v in choices(ctx.overrides).items() if k != "experiment"
        )
        run = self.init(
            id=content_key({"experiment": experiment, "steps": [r["key"] for r in rows]}),
            group=experiment,
            job_type="member",
            name=f"{experiment}/{chosen or 'member'}",
            tags=[*self.tags, "member"],
            notes=label,
            config={**flat, "steps": {r["step"]: r["key"] for r in rows}},
        )
        run.summary.update(lineage_summary(rows, metrics))
        run.log({"lineage": table_of(rows)})
        run.finish()

    def report_run(self, experiment: str, report: Any) -> None:
        """A `report` run in the experiment's group: every table and figure of report.md."""
        import wandb

        run = self.init(
            id=content_key({"experiment": experiment, "report": str(report.directory)}),
            group=experiment,
            job_type="report",
            name=f"{experiment}/report",
            tags=[*self.tags, "report"],
            config={
                "experiment": experiment,
                "directory": str(report.directory),
                "members": len(report.sweep.members),
                "axes": report.sweep.axes,
            },
        )
        run.log({f"table/{name}": table_of(rows) for name, rows in report.tables.items() if rows})
        run.log({f"figure/{name}": wandb.Image(str(path)) for name, path in report.figures.items()})
        run.summary.update(report.summary)
        run.finish()
