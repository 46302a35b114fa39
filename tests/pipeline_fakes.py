"""Steps with no model, for testing the engine: they record each real execution in a log
file (one line per run, appended atomically) so tests can count what was computed."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from specalign.pipeline.step import Artifact, Step


def record(name: str, key_hint: str) -> None:
    log = os.environ.get("SPECALIGN_TEST_RUNLOG")
    if log:
        with open(log, "a") as handle:
            handle.write(f"{name} {key_hint} {os.getpid()}\n")


class WriteText(Step):
    """A dataset step: writes its `text` setting, prefixed by its input's text if any."""

    optional = ("dataset",)
    produces = "dataset"

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        record(self.name, str(self.settings.get("text")))
        upstream = ""
        if "dataset" in inputs:
            upstream = (inputs["dataset"].path / "text.txt").read_text()
        (out / "text.txt").write_text(upstream + str(self.settings.get("text", "")))
        return {"chars": len(upstream) + len(str(self.settings.get("text", "")))}


class SpecEcho(Step):
    """Depends on the spec: writes its id, so sweeps over specs give one artifact per spec."""

    consumes = ("dataset",)
    produces = "metrics"
    uses = ("spec",)

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        record(self.name, self.ctx.spec.id)
        (out / "spec.txt").write_text(self.ctx.spec.id)
        return {"spec_chars": len(self.ctx.spec.text)}


class SlowCounter(Step):
    """Counts to `total` with a pause per tick, saving progress in the work dir: a killed
    run resumes where it stopped (like training from a checkpoint)."""

    optional = ("dataset",)
    produces = "dataset"

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        record(self.name, "start")
        progress = work / "progress.json"
        done = json.loads(progress.read_text())["ticks"] if progress.exists() else 0
        resumed_at = done
        (out / "partial.txt").write_text("half written")
        while done < int(self.settings["total"]):
            time.sleep(float(self.settings.get("pause", 0.05)))
            done += 1
            tmp = progress.with_suffix(".tmp")  # atomic, like a real checkpoint: never half-read
            tmp.write_text(json.dumps({"ticks": done}))
            os.replace(tmp, progress)
        (out / "partial.txt").unlink()
        (out / "count.txt").write_text(str(done))
        return {"ticks": done, "resumed_at": resumed_at}
