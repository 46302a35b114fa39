"""inspect logs for likelihood evaluators: results computed outside an inspect Task (our
batched log-prob scorer), written with `write_eval_log` so they open in the same viewer
(`inspect view --log-dir <artifact>/inspect`) as the generated evaluations."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LOG_DIR = "inspect"


def write_scored_log(
    path: Path,
    *,
    task: str,
    model: str,
    samples: list[dict[str, Any]],
    metrics: dict[str, float],
    task_args: dict[str, Any] | None = None,
) -> Path:
    """One sample per dict: id, epoch, input, choices, target, output, value (the score),
    explanation and metadata (e.g. each option's log-prob)."""
    from inspect_ai.log import (
        EvalConfig,
        EvalDataset,
        EvalLog,
        EvalMetric,
        EvalResults,
        EvalSample,
        EvalScore,
        EvalSpec,
        EvalStats,
        write_eval_log,
    )
    from inspect_ai.model import ModelOutput
    from inspect_ai.scorer import Score

    now = datetime.now(UTC).isoformat()
    log = EvalLog(
        status="success",
        eval=EvalSpec(
            created=now,
            task=task,
            task_args=dict(task_args or {}),
            dataset=EvalDataset(name=task, samples=len({s["id"] for s in samples})),
            model=model,
            config=EvalConfig(),
        ),
        results=EvalResults(
            total_samples=len(samples),
            completed_samples=len(samples),
            scores=[
                EvalScore(
                    name=task,
                    scorer="log-likelihood",
                    metrics={k: EvalMetric(name=k, value=float(v)) for k, v in metrics.items()},
                )
            ],
        ),
        stats=EvalStats(started_at=now, completed_at=now),
        samples=[
            EvalSample(
                id=s["id"],
                epoch=int(s.get("epoch", 1)),
                input=s["input"],
                choices=s.get("choices"),
                target=s.get("target", ""),
                output=ModelOutput.from_content(model=model, content=s.get("output", "")),
                scores={
                    task: Score(
                        value=float(s["value"]),
                        answer=s.get("output"),
                        explanation=s.get("explanation"),
                        metadata=s.get("metadata"),
                    )
                },
                metadata=s.get("metadata") or {},
            )
            for s in samples
        ],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_eval_log(log, str(path))
    return path
