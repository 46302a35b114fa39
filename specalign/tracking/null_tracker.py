"""logger=none: nothing is sent anywhere; metrics stay in manifests and metrics.json."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class NullStepRun:
    run_id: str | None = None

    def log_table(self, name: str, rows: list[dict[str, Any]]) -> None:
        """Nothing to show without a tracker."""

    def finish(self, metrics: dict[str, Any], manifest: dict[str, Any]) -> None:
        """Nothing to record outside the artifact itself."""


class NullTracker:
    report_to = "none"  # what TRL trainers report to

    @contextmanager
    def step_run(self, ctx: Any, planned: Any) -> Iterator[NullStepRun]:
        yield NullStepRun()

    def member_run(self, ctx: Any, results: list[Any]) -> None:
        """The member's lineage stays in summary.json."""

    def report_run(self, experiment: str, report: Any) -> None:
        """The report stays in report.md and its figures."""
