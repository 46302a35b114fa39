"""What of a config group enters a step's key: the values that change its result, and files
by their content rather than their path (docs/architecture.md: keys).

- `spec`: its identity and names, not the paths of its files (the spec's text enters by
  hash; the data files by the content hash of the steps that read them) and not the
  fields only evaluation reads (so choosing what to evaluate never retrains anything).
- `trainer`: `precision: auto` as the precision it resolves to here (fp32 on a CPU, bf16 on
  a capable GPU: different artifacts), training arguments without the logging and
  checkpointing settings that do not change the weights.
- `backbone`: a local checkpoint directory as a fingerprint of its files, not its path.
- `eval`: evaluators' prompt files by their hashes (each evaluator's fingerprint), not paths,
  and the grader without its transport settings (budget, concurrency, retries).
- `annotator`: its LLM without transport settings, like a synthesis step's.
"""

from __future__ import annotations

import os
import shutil
from functools import cache
from pathlib import Path
from typing import Any

from specalign.pipeline.keys import content_key, file_sha256

SPEC_OUTSIDE_KEYS = (
    "document",
    "demonstrations",
    "documents",
    "preference_pairs",
    "rule_items",
    "forced_choice_items",
    "forced_choice_values",
    "target_value",
    "previous",  # the old policy enters spec_diff's key by its content hash
    "headline",  # what the run's end and reports show first: display only
)
# TrainingArguments that say how a run is logged or checkpointed, not what it learns
# (a killed and resumed run equals an uninterrupted one: tests/test_training.py)
TRAINING_NOISE = (
    "logging_steps",
    "logging_first_step",
    "logging_strategy",
    "logging_dir",
    "save_steps",
    "save_strategy",
    "save_total_limit",
    "report_to",
    "run_name",
    "disable_tqdm",
)
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
# LLM backend settings that change how requests travel, not what comes back
TRANSPORT = (
    "budget",
    "max_concurrency",
    "requests_per_minute",
    "timeout_s",
    "max_retries",
    "backoff_base_s",
    "backoff_max_s",
    "api_key_env",
)


@cache
def gpu_bf16() -> bool | None:
    """Whether this machine trains in bf16 under `precision: auto`: None without a visible
    NVIDIA GPU (no torch import: planning on a CPU stays fast), else torch's answer."""
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1")
    if hidden or not shutil.which("nvidia-smi"):
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    return bool(torch.cuda.is_bf16_supported())


def resolved_precision(precision: str) -> str:
    """`auto` as what it means on this machine: bf16 where a GPU supports it, else fp32."""
    if precision != "auto":
        return precision
    return "bf16" if gpu_bf16() else "fp32"


def without(mapping: dict[str, Any] | None, names: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in (mapping or {}).items() if k not in names}


def training_args_key(args: dict[str, Any] | None) -> dict[str, Any]:
    return without(args, TRAINING_NOISE)


def trainer_key(cfg: dict[str, Any]) -> dict[str, Any]:
    out = dict(cfg)
    out["precision"] = resolved_precision(str(cfg.get("precision", "auto")))
    out["args"] = training_args_key(cfg.get("args"))
    return out


@cache
def checkpoint_fingerprint(directory: str) -> str:
    """A local checkpoint by content: the hashes of its small files (config, tokenizer) and,
    for weight files, their sizes and the hash of their first and last MiB (hashing tens of
    GB at every plan would be too slow; a retrained checkpoint changes all of these)."""
    parts = []
    for path in sorted(Path(directory).rglob("*")):
        if not path.is_file():
            continue
        name = str(path.relative_to(directory))
        size = path.stat().st_size
        if size <= 8 << 20:
            parts.append((name, file_sha256(path)))
            continue
        with open(path, "rb") as handle:
            head = handle.read(1 << 20)
            handle.seek(-(1 << 20), os.SEEK_END)
            tail = handle.read(1 << 20)
        parts.append((name, size, content_key({"head": head.hex(), "tail": tail.hex()})))
    return content_key({"files": parts}, length=32)


def backbone_key(cfg: dict[str, Any]) -> dict[str, Any]:
    source = cfg.get("source")
    if isinstance(source, str) and Path(source).expanduser().is_dir():
        directory = str(Path(source).expanduser().resolve())
        return {**cfg, "source": {"local_checkpoint": checkpoint_fingerprint(directory)}}
    return cfg


def eval_key(cfg: dict[str, Any]) -> dict[str, Any]:
    evaluators = {
        name: without(ev, ("prompt",)) if isinstance(ev, dict) else ev
        for name, ev in (cfg.get("evaluators") or {}).items()
    }
    grader = cfg.get("grader")
    return {**cfg, "evaluators": evaluators, "grader": without(grader, TRANSPORT) or grader}


def annotator_key(cfg: dict[str, Any]) -> dict[str, Any]:
    llm = cfg.get("llm")
    return {**cfg, "llm": without(llm, TRANSPORT)} if isinstance(llm, dict) else cfg


SECTIONS = {
    "spec": lambda cfg: without(cfg, SPEC_OUTSIDE_KEYS),
    "eval_spec": lambda cfg: without(cfg, SPEC_OUTSIDE_KEYS),
    "trainer": trainer_key,
    "backbone": backbone_key,
    "eval": eval_key,
    "annotator": annotator_key,
}


def key_section(name: str, value: Any) -> Any:
    """A `uses` group as its key sees it."""
    normalize = SECTIONS.get(name)
    return normalize(value) if normalize is not None and isinstance(value, dict) else value


def key_synthesizer(cfg: dict[str, Any]) -> dict[str, Any]:
    """An LLM backend's settings without how requests travel (TRANSPORT)."""
    return without(dict(cfg), TRANSPORT)
