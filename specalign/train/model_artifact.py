"""Model artifacts: a LoRA adapter over the run's backbone, or full weights.

`model.json` says which, so the next step (SFT continuing MSM's adapter, an evaluator)
loads it the same way whichever trainer produced it. An adapter trained on top of an
earlier model (a merged adapter with `new_adapter: true`, or LoRA over full weights) names
that model as its `base` (step and key, in the same store, which never changes a committed
artifact): it loads as the base, merged, with the adapter applied, so the earlier training
is part of what loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from peft import PeftModel
from transformers import AutoModelForCausalLM, PreTrainedModel

from specalign.errors import ConfigError
from specalign.pipeline.step import Artifact

MODEL_JSON = "model.json"


def describe(artifact: Artifact | None) -> dict[str, Any]:
    if artifact is None:
        return {"format": "backbone"}
    return json.loads((artifact.path / MODEL_JSON).read_text())


def load_model(
    backbone: Any, artifact: Artifact | None, *, trainable: bool = False, **load_kwargs: Any
) -> PreTrainedModel:
    """The backbone as it is, with an adapter applied, or the full weights of `artifact`."""
    info = describe(artifact)
    if info["format"] == "full":
        return AutoModelForCausalLM.from_pretrained(
            str(artifact.path / info["path"]), dtype=backbone.torch_dtype, **load_kwargs
        )
    if info["format"] == "backbone":
        return backbone.load_model(**load_kwargs)
    if info.get("backbone") != backbone.name:
        raise ConfigError(
            f"{artifact.path}: adapter trained on backbone={info.get('backbone')}, "
            f"but this run uses backbone={backbone.name}."
        )
    if info.get("base"):
        base = load_model(backbone, base_artifact(artifact, info["base"]), **load_kwargs)
        base = base.merge_and_unload() if isinstance(base, PeftModel) else base
    else:
        base = backbone.load_model(**load_kwargs)
    adapter = str(artifact.path / info["path"])
    return PeftModel.from_pretrained(base, adapter, is_trainable=trainable)


def base_artifact(artifact: Artifact, base: dict[str, str]) -> Artifact:
    """The model an adapter was trained on top of, in the same store."""
    path = artifact.path.parent.parent / base["step"] / base["key"]
    if not (path / MODEL_JSON).is_file():
        raise ConfigError(
            f"{artifact.path}: its base model {base['step']}/{base['key']} is not in the store "
            f"({path}). Fix: keep the store whole, or re-run the stage that made it."
        )
    return Artifact(base["step"], "model", base["key"], path)


def base_of(start: Artifact | None, continuing: bool) -> dict[str, str] | None:
    """What an adapter trained from `start` sits on: the base `start` itself sits on when it
    continues start's adapter, else `start` (merged, or full weights), else the backbone."""
    if start is None:
        return None
    if continuing:
        return describe(start).get("base")
    return {"step": start.step, "key": start.key}


def save_model(
    model: PreTrainedModel,
    tokenizer: Any,
    backbone: Any,
    out: Path,
    base: dict[str, str] | None = None,
    trainer: Any = None,
) -> None:
    """Save what the trainer holds: the adapter alone for PEFT models (with the model it was
    trained on top of, if not the backbone), else full weights. With a `trainer`, call this
    on every rank: `trainer.save_model` gathers FSDP / ZeRO-3 shards (every rank takes part)
    and writes on the main process; the rest is written by rank 0 alone."""
    from specalign.pipeline import distributed

    is_adapter = isinstance(model, PeftModel)
    subdir = "adapter" if is_adapter else "model"
    if trainer is not None:
        trainer.save_model(str(out / subdir))
    elif distributed.is_main():
        model.save_pretrained(str(out / subdir))
    if not distributed.is_main():
        return
    tokenizer.save_pretrained(str(out / subdir))
    info: dict[str, Any] = {
        "format": "adapter" if is_adapter else "full",
        "path": subdir,
        "backbone": backbone.name,
    }
    if is_adapter and base:
        info["base"] = base
    (out / MODEL_JSON).write_text(json.dumps(info, indent=2))
