"""The stage graph: steps declare inputs and outputs; the runner caches them by content key."""

from specalign.pipeline.context import RunContext
from specalign.pipeline.plan import Plan, PlannedStep, build_plan
from specalign.pipeline.runner import run_plan
from specalign.pipeline.step import Artifact, Step
from specalign.pipeline.store import ArtifactStore

__all__ = [
    "Artifact",
    "ArtifactStore",
    "Plan",
    "PlannedStep",
    "RunContext",
    "Step",
    "build_plan",
    "run_plan",
]
