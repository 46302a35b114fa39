"""W&B tracking: group = experiment, job_type = step, one run per computed step.

The run id is derived from (experiment, step key), so a step killed and re-run resumes the
same W&B run. Nothing secret is logged: the config comes from the resolved step key
material (no environment, no keys), and W&B reads credentials from its own login/env.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from specalign.pipeline.keys import content_key

log = logging.getLogger(__name__)


class WandbStepRun:
    def __init__(self, run: Any) -> None:
        self.run = run
        self.run_id: str = run.id

    def log_table(self, name: str, rows: list[dict[str, Any]]) -> None:
        """Rows as a W&B table; lists and dicts become JSON text so every cell renders."""
        import json

        import wandb

        columns = list(rows[0])
        data = [
            [
                v if v is None or isinstance(v, str | int | float | bool) else json.dumps(v)
                for v in row.values()
            ]
            for row in rows
        ]
        self.run.log({name: wandb.Table(columns=columns, data=data)})

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

    @contextmanager
    def step_run(self, ctx: Any, planned: Any) -> Iterator[WandbStepRun]:
        import wandb

        self.dir.mkdir(parents=True, exist_ok=True)
        # TRL / transformers' WandbCallback logs into the active run; keep it from
        # uploading checkpoints (which can be large) unless the user asks for it.
        os.environ.setdefault("WANDB_LOG_MODEL", "false")
        experiment = str(ctx.cfg.name)
        run = wandb.init(
            project=self.project,
            entity=self.entity,
            mode=self.mode,
            dir=str(self.dir),
            id=content_key({"experiment": experiment, "key": planned.key}),
            resume="allow",
            group=experiment,
            job_type=planned.name,
            name=f"{experiment}/{planned.name}",
            tags=[*self.tags, str(ctx.cfg.stage.name)],
            config={"step": planned.name, "key": planned.key, **planned.material},
            reinit="finish_previous",
        )
        log.info("W&B run %s (%s, %s mode)", run.id, experiment, self.mode)
        try:
            yield WandbStepRun(run)
        except BaseException:
            run.finish(exit_code=1)
            raise
        run.finish()
