"""Run a plan: reuse committed artifacts, compute the rest under a lock, commit atomically."""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specalign.pipeline import distributed, preemption
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
    material = planned.material
    hashes = {material[k] for k in ("spec_hash", "eval_spec_hash") if k in material}
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
    """One code path for one process and for many ranks. Rank 0 decides (reuse or compute)
    and tells the others; it re-checks the store once it holds the key's lock, since another
    job may have committed the key meanwhile; training runs on every rank, any other step on
    rank 0 while the others wait at a barrier."""
    name, key, kind = planned.name, planned.key, planned.produces
    main = distributed.is_main()
    if distributed.broadcast(store.get(name, kind, key) is not None if main else None):
        return reused(store.get(name, kind, key))
    ran = None
    with ExitStack() as held:
        if main:
            held.enter_context(store.lock(name, key))
        if distributed.broadcast(store.get(name, kind, key) is not None if main else None):
            return reused(store.get(name, kind, key))  # committed while we waited
        if main:
            store.prepare(name, key)
        distributed.barrier()  # the others wait for a prepared work directory
        work = store.work_dir(name, key)
        if planned.step.all_ranks or main:
            ran = execute(planned, store, ctx, inputs, work / "out", work)
        distributed.barrier()  # every rank has finished the step
        if main and ran is not None:
            store.commit(name, kind, key, ran[1])
        distributed.barrier()  # committed, visible to every rank
    preemption.honour_pending()  # a preemption signal that came as training ended
    artifact = store.get(name, kind, key)
    seconds = ran[2] if ran is not None else 0.0
    return StepResult(name, artifact, False, seconds, artifact.manifest.get("metrics", {}))


def reused(artifact: Artifact) -> StepResult:
    return StepResult(artifact.step, artifact, True, 0.0, artifact.manifest.get("metrics", {}))


def execute(
    planned: PlannedStep,
    store: ArtifactStore,
    ctx: RunContext,
    inputs: dict[str, Artifact],
    out: Path,
    work: Path,
) -> tuple[dict[str, Any], dict[str, Any], float]:
    """Run the step into `out` inside its tracker run; returns (metrics, manifest, seconds)."""
    name, key = planned.name, planned.key
    log.info("running %s (%s) -> %s", name, key, store.path(name, key))
    started = time.time()
    with ctx.tracker.step_run(ctx, planned) as tracking:
        planned.step.tracking = tracking
        try:
            metrics = planned.step.run(inputs, out, work) or {}
        finally:
            planned.step.release()  # its model / LLM engine: one at a time, not one per step
        seconds = time.time() - started
        manifest = {
            "key": key,
            "step": name,
            "kind": planned.produces,
            "stage": ctx.cfg.stage.name,
            "experiment": ctx.cfg.name,
            "key_material": planned.material,
            "inputs": {slot: {"step": a.step, "key": a.key} for slot, a in inputs.items()},
            "spec_hashes": lineage_spec_hashes(planned, inputs),
            "versions": package_versions(),
            "git_sha": git_sha(),
            "timings": {"started": started, "seconds": round(seconds, 3)},
            "world_size": distributed.world_size(),
            "tracker_run_id": tracking.run_id,
            "metrics": metrics,
        }
        tracking.finish(metrics, manifest)
    return metrics, manifest, seconds
