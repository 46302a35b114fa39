"""TrainingArguments for any TRL trainer from the `trainer` group plus a step's overrides.

Kept in one place so every training step agrees on precision, devices, checkpointing and
reporting; each step adds only its own fields (max_length, loss settings, ...).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import torch

from specalign.errors import ConfigError
from specalign.progress import mode as progress_mode

log = logging.getLogger(__name__)


def precision_flags(precision: str) -> dict[str, bool]:
    """`auto`: bf16 where a GPU supports it, plain fp32 otherwise (CPU); resolved the way the
    step's key resolved it (pipeline/key_sections.py), so the key says what ran."""
    from specalign.pipeline.key_sections import PRECISIONS, resolved_precision

    if precision not in PRECISIONS:
        raise ConfigError(f"trainer.precision={precision}: choose one of {', '.join(PRECISIONS)}.")
    cuda = torch.cuda.is_available()
    precision = resolved_precision(precision)
    if precision in ("bf16", "fp16") and not cuda:
        raise ConfigError(
            f"trainer.precision={precision} needs a GPU; this machine has none. "
            "Fix: trainer.precision=auto (fp32 on CPU)."
        )
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def training_kwargs(
    trainer_cfg: dict[str, Any],
    step_args: dict[str, Any] | None,
    output_dir: Path,
    seed: int,
    report_to: str,
) -> dict[str, Any]:
    """Keyword arguments for a TRL `*Config`; step args override the trainer group's."""
    kwargs: dict[str, Any] = {**trainer_cfg.get("args", {}), **(step_args or {})}
    cpu = not torch.cuda.is_available()
    kwargs.update(
        output_dir=str(output_dir),
        seed=seed,
        data_seed=seed,
        report_to=report_to,
        save_strategy="steps",
        logging_first_step=True,
        activation_checkpointing=bool(trainer_cfg.get("activation_checkpointing", False)),
        use_cpu=cpu,
        dataloader_pin_memory=not cpu,
        # a bar in a terminal; elsewhere progress.training_callback's periodic lines
        disable_tqdm=kwargs.get("disable_tqdm", progress_mode() != "bar"),
        **precision_flags(str(trainer_cfg.get("precision", "auto"))),
    )
    return kwargs


RESUME_MODES = ("auto", "never", "must")


def resume_checkpoint(mode: str, output_dir: Path) -> str | None:
    """The checkpoint a training step starts from, by `resume=`: `auto` the newest one a
    killed run left (if any), `never` none (the old checkpoints are deleted), `must` the
    newest one or an error (to be sure a long run is continued, not restarted)."""
    if mode not in RESUME_MODES:
        raise ConfigError(f"resume={mode}: choose one of {', '.join(RESUME_MODES)}.")
    if mode == "never":
        import shutil

        shutil.rmtree(output_dir, ignore_errors=True)
        return None
    last = last_checkpoint(output_dir)
    if mode == "must" and last is None:
        raise ConfigError(
            f"resume=must, but there is no checkpoint in {output_dir}. "
            "Fix: resume=auto to start (or continue) the step."
        )
    return last


def complete(checkpoint: Path) -> bool:
    """Whether a checkpoint was fully written: the Trainer writes `trainer_state.json` last
    (after the weights, optimizer and RNG states), so a run killed mid-save leaves a
    `checkpoint-N` without it, or with it cut short."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def last_checkpoint(output_dir: Path) -> str | None:
    """The newest complete `checkpoint-N` a killed run left behind, to resume from (a newer
    one it was killed while writing is skipped, with a warning; transformers'
    `get_last_checkpoint` would pick it and then fail to load it)."""
    if not output_dir.is_dir():
        return None
    numbered = [
        (int(match.group(1)), path)
        for path in output_dir.iterdir()
        if path.is_dir() and (match := re.fullmatch(r"checkpoint-(\d+)", path.name))
    ]
    for _, path in sorted(numbered, reverse=True):
        if complete(path):
            return str(path)
        log.warning("skipping %s: a run was killed while writing it", path)
    return None


def logged_series(log_history: list[dict[str, Any]], name: str) -> list[float]:
    """One logged value (`loss`, `rewards/margins`, ...) over a trainer's log history."""
    return [float(entry[name]) for entry in log_history if name in entry]
