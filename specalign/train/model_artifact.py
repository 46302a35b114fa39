"""Model artifacts: a LoRA adapter over the run's backbone, or full weights.

`model.json` says which, so the next step (SFT continuing MSM's adapter, an evaluator)
loads it the same way whichever trainer produced it.
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
    base = backbone.load_model(**load_kwargs)
    if info["format"] == "backbone":
        return base
    if info.get("backbone") != backbone.name:
        raise ConfigError(
            f"{artifact.path}: adapter trained on backbone={info.get('backbone')}, "
            f"but this run uses backbone={backbone.name}."
        )
    adapter = str(artifact.path / info["path"])
    return PeftModel.from_pretrained(base, adapter, is_trainable=trainable)


def save_model(model: PreTrainedModel, tokenizer: Any, backbone: Any, out: Path) -> None:
    """Save what the trainer holds: the adapter alone for PEFT models, else full weights."""
    is_adapter = isinstance(model, PeftModel)
    subdir = "adapter" if is_adapter else "model"
    model.save_pretrained(str(out / subdir))
    tokenizer.save_pretrained(str(out / subdir))
    info = {
        "format": "adapter" if is_adapter else "full",
        "path": subdir,
        "backbone": backbone.name,
    }
    (out / MODEL_JSON).write_text(json.dumps(info, indent=2))
