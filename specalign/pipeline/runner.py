"""Run a plan: reuse committed artifacts, compute the rest under a lock, commit atomically."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from specalign.pipeline.context import RunContext
from specalign.pipeline.manifest import git_sha, package_versions
from specalign.pipeline.plan import Plan, PlannedStep
from specalign.pipeline.step import Artifact
from specalign.pipeline.store import ArtifactStore

log = logging.getLogger(__name__)


@dataclass
class StepResult:
    name: str
    artifact: Artifact
    cached: bool
    seconds: float
    metrics: dict[str, Any]


def status(plan: Plan, store: ArtifactStore) -> list[tuple[PlannedStep, bool]]:
    """(step, is it already in the store) for each planned step."""
    return [(p, store.get(p.name, p.produces, p.key) is not None) for p in plan.steps]


def lineage_spec_hashes(planned: PlannedStep, inputs: dict[str, Artifact]) -> list[str]:
    """The spec hashes an artifact depends on: its own (if it uses the spec) and its inputs'.
    A step that never reads a spec (SFT on fixed demonstrations) has none, so it is shared
    across specs."""
    hashes = {planned.material["spec_hash"]} if "spec_hash" in planned.material else set()
    for artifact in inputs.values():
        hashes.update(artifact.manifest.get("spec_hashes", []))
    return sorted(hashes)


def run_plan(plan: Plan, ctx: RunContext) -> list[StepResult]:
    store = ArtifactStore(ctx.store_dir)
    done: dict[str, Artifact] = {}
    results = []
    for index, planned in enumerate(plan.steps, start=1):
        label = f"[{index}/{len(plan.steps)}] {planned.name} ({planned.key})"
        result = run_step(planned, store, ctx, {s: done[src] for s, src in planned.inputs.items()})
        log.info("%s %s", label, "reused" if result.cached else f"done in {result.seconds:.1f}s")
        done[planned.name] = result.artifact
        results.append(result)
    return results


def run_step(
    planned: PlannedStep, store: ArtifactStore, ctx: RunContext, inputs: dict[str, Artifact]
) -> StepResult:
    name, key, kind = planned.name, planned.key, planned.produces
    cached = store.get(name, kind, key)
    if cached is not None:
        return StepResult(name, cached, True, 0.0, cached.manifest.get("metrics", {}))
    with store.lock(name, key):
        cached = store.get(name, kind, key)  # another process may have finished it meanwhile
        if cached is not None:
            return StepResult(name, cached, True, 0.0, cached.manifest.get("metrics", {}))
        log.info("running %s (%s) -> %s", name, key, store.path(name, key))
        out, work = store.prepare(name, key)
        started = time.time()
        with ctx.tracker.step_run(ctx, planned) as tracking:
            planned.step.tracking = tracking
            metrics = planned.step.run(inputs, out, work) or {}
            seconds = time.time() - started
            manifest = {
                "key": key,
                "step": name,
                "kind": kind,
                "stage": ctx.cfg.stage.name,
                "experiment": ctx.cfg.name,
                "key_material": planned.material,
                "inputs": {slot: {"step": a.step, "key": a.key} for slot, a in inputs.items()},
                "spec_hashes": lineage_spec_hashes(planned, inputs),
                "versions": package_versions(),
                "git_sha": git_sha(),
                "timings": {"started": started, "seconds": round(seconds, 3)},
                "tracker_run_id": tracking.run_id,
                "metrics": metrics,
            }
            tracking.finish(metrics, manifest)
        artifact = store.commit(name, kind, key, manifest)
    return StepResult(name, artifact, False, seconds, metrics)
