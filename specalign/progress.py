"""Progress of long work: a tqdm bar in a terminal, a log line every `every_s` seconds
otherwise (SLURM logs, CI, `nohup`), where a bar's carriage returns would be noise.

    with Progress(total=len(batches), desc="generate", unit="batch") as bar:
        for batch in batches:
            ...
            bar.update(1)

`SPECALIGN_PROGRESS=bar|log|off` forces a mode; `SPECALIGN_PROGRESS_EVERY_S` sets the
interval of the log lines (default 30 s).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from types import TracebackType
from typing import Any

log = logging.getLogger("specalign.progress")


def mode() -> str:
    forced = os.environ.get("SPECALIGN_PROGRESS", "").lower()
    if forced in ("bar", "log", "off"):
        return forced
    return "bar" if sys.stderr.isatty() else "log"


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """Counts work done out of `total`; `note` adds a suffix (e.g. cache hits)."""

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str = "it",
        every_s: float | None = None,
        initial: int = 0,
        note: str = "",
    ) -> None:
        self.total, self.desc, self.unit, self.note = int(total), desc, unit, note
        self.done = int(initial)
        self.mode = mode()
        if every_s is None:
            every_s = float(os.environ.get("SPECALIGN_PROGRESS_EVERY_S", 30))
        self.every_s = float(every_s)
        self.started = self.last = time.monotonic()
        self.start_done = self.done
        self.bar: Any = None
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=self.done, desc=desc, unit=unit)
            if note:
                self.bar.set_postfix_str(note)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close(finished=kind is None)

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        rate = (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else None
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        eta = f", ~{duration(left)} left" if left is not None and self.done < self.total else ""
        note = f", {self.note}" if self.note else ""
        return f"{self.desc}: {self.done}/{self.total} {self.unit}{share}{note}{eta}"

    def update(self, n: int = 1, note: str | None = None) -> None:
        self.done += n
        if note is not None:
            self.note = note
        if self.bar is not None:
            self.bar.update(n)
            if note is not None:
                self.bar.set_postfix_str(note)
        elif self.mode == "log" and time.monotonic() - self.last >= self.every_s:
            self.last = time.monotonic()
            log.info("%s", self.line())

    def close(self, finished: bool = True) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.mode == "log" and finished and self.done and self.total:
            took = time.monotonic() - self.started
            if took >= 5:  # a short call is not worth a line
                log.info("%s (done in %s)", self.line(), duration(took))


def training_callback(name: str) -> Any:
    """A transformers TrainerCallback logging `<name>: step 12/120 (10%), loss 2.31, ~2 min
    left` every `every_s` seconds where tqdm's bar would only add carriage returns."""
    from transformers import TrainerCallback

    class TrainingProgress(TrainerCallback):
        bar: Progress | None = None
        loss: float | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.bar = Progress(
                state.max_steps, f"{name} training", "steps", initial=state.global_step
            )

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.bar is not None:
                note = f"loss {self.loss:.4g}" if self.loss is not None else None
                self.bar.update(state.global_step - self.bar.done, note)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.bar is not None:
                self.bar.close()

    return TrainingProgress()
