"""The stage contract (ARCHITECTURE.md): a step declares what it consumes and produces, and
what configuration it depends on, so the runner can key, cache and resume it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from specalign.pipeline.context import RunContext


@dataclass(frozen=True)
class Artifact:
    """A committed step output: `<store>/<step>/<key>/` with its manifest.json."""

    step: str
    kind: str
    key: str
    path: Path

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.path / "manifest.json").read_text())


class Step:
    """One kind of pipeline step. Subclasses set the class attributes and implement `run`.

    consumes:  input slots this step needs, named after the artifact kind they take.
    optional:  input slots it can do without (e.g. `model`: the backbone when absent).
    slot_kinds: the kind a slot takes when the slot is not named after it (e.g. the eval
               step's `baseline` slot takes a `metrics` artifact).
    produces:  the kind of artifact it writes ("dataset" | "model" | "metrics" | ...).
    uses:      top-level config groups whose resolved values change its result
               ("backbone", "trainer", "eval", "seed", "spec"; evaluation steps "eval_spec": the
               spec they score against); only these enter its key,
               so logging or path settings never invalidate an artifact.
    version:   bump when the step's code changes what it produces for the same inputs.
    all_ranks: runs on every rank of a multi-process run (training steps); other steps
               run on rank 0 only (see specalign/pipeline/distributed.py).
    """

    consumes: ClassVar[tuple[str, ...]] = ()
    optional: ClassVar[tuple[str, ...]] = ()
    slot_kinds: ClassVar[dict[str, str]] = {}
    produces: ClassVar[str] = "dataset"
    uses: ClassVar[tuple[str, ...]] = ()
    version: ClassVar[int] = 1
    all_ranks: ClassVar[bool] = False  # True: runs on every rank (training); else rank 0

    def __init__(self, name: str, settings: dict[str, Any], ctx: RunContext) -> None:
        self.name = name
        self.settings = settings
        self.ctx = ctx
        self.tracking: Any = None  # the step's tracker run, set by the runner while it runs

    def log_table(self, name: str, rows: list[dict[str, Any]]) -> None:
        """Show rows as a table in the step's tracker run (W&B); a no-op without one."""
        if self.tracking is not None and rows:
            self.tracking.log_table(name, rows)

    def key_settings(self) -> dict[str, Any]:
        """The settings as the key sees them: training `args` without logging and
        checkpointing; steps drop settings their fingerprint covers by content (files)."""
        from specalign.pipeline.key_sections import training_args_key

        if "args" not in self.settings:
            return self.settings
        return {**self.settings, "args": training_args_key(self.settings["args"])}

    def required_inputs(self) -> tuple[str, ...]:
        """The slots that must be wired: `consumes`, unless a setting asks for more."""
        return self.consumes

    def release(self) -> None:
        """Free what the step loaded (models, LLM engines) once it has run: the plan keeps
        every step, and a run must not hold one model per step."""

    def estimate(self) -> dict[str, Any] | None:
        """What running this step would spend (LLM calls, tokens), for `dry_run=true`; None
        for steps that call no LLM."""
        return None

    def fingerprint(self) -> dict[str, Any]:
        """Extra key material beyond config and inputs, e.g. hashes of files the step reads."""
        return {}

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        """Write the artifact into `out`; `work` survives a kill (checkpoints, partial caches).

        Returns summary metrics, recorded in the manifest and the step's tracker run.
        """
        raise NotImplementedError
