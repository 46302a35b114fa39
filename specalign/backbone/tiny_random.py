"""A 2-layer randomly initialised Llama with the real SmolLM2 tokenizer, for fast tests.

It exercises the whole pipeline (chat template, LoRA targets, training, generation) in seconds.
Weights depend only on the config and `seed`, so runs and tests are reproducible; `model_path`
saves the same weights once for consumers that want a directory.
"""

from __future__ import annotations

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
from specalign.backbone.once import build_once, copy_files, short_hash

if TYPE_CHECKING:
    from transformers import LlamaConfig, PreTrainedModel


class TinyRandomBackbone(Backbone):
    """`LlamaForCausalLM` built from a small `LlamaConfig`, seeded, vocab from the tokenizer."""

    def __init__(
        self,
        *,
        num_hidden_layers: int = 2,
        hidden_size: int = 64,
        intermediate_size: int = 128,
        num_attention_heads: int = 4,
        num_key_value_heads: int = 2,
        max_position_embeddings: int = 2048,
        tie_word_embeddings: bool = True,
        initializer_range: float = 0.02,
        seed: int = 0,
        package: str = SMOLLM2_PACKAGE,
        gguf_file: str = SMOLLM2_GGUF,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.architecture: dict[str, Any] = {
            "num_hidden_layers": int(num_hidden_layers),
            "hidden_size": int(hidden_size),
            "intermediate_size": int(intermediate_size),
            "num_attention_heads": int(num_attention_heads),
            "num_key_value_heads": int(num_key_value_heads),
            "max_position_embeddings": int(max_position_embeddings),
            "tie_word_embeddings": bool(tie_word_embeddings),
            # larger: peaked, prompt-dependent distributions (judges that say Yes and No)
            "initializer_range": float(initializer_range),
        }
        self.seed = int(seed)
        self.source = PackagedGGUF(package=package, gguf_file=gguf_file)

    @cached_property
    def tokenizer_path(self) -> str:
        """The SmolLM2 tokenizer, extracted from the GGUF once per cache."""
        return str(cached_tokenizer_dir(self.source, self.backbones_dir))

    def llama_config(self) -> LlamaConfig:
        """The architecture, with vocabulary and special token ids taken from the tokenizer."""
        from transformers import LlamaConfig

        tokenizer = self.load_tokenizer()
        return LlamaConfig(
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **self.architecture,
        )

    def build_model(self) -> PreTrainedModel:
        """Fresh float32 weights from `seed`, without disturbing the caller's global RNG.

        Returned in eval mode, like `from_pretrained` returns the other backbones' models.
        """
        import torch
        from transformers import AutoModelForCausalLM

        config = self.llama_config()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = AutoModelForCausalLM.from_config(
                config, dtype=torch.float32, attn_implementation=self.attn_implementation
            )
        return model.eval()

    def load_model(
        self, device_map: str | dict[str, Any] | None = None, **from_pretrained: Any
    ) -> PreTrainedModel:
        """Built in memory (no disk round trip); the same weights `model_path` holds.

        With a `device_map` or other `from_pretrained` arguments it loads `model_path`
        instead, so they mean exactly what `from_pretrained` makes of them.
        """
        if device_map is not None or from_pretrained:
            return super().load_model(device_map, **from_pretrained)
        model = self.build_model()
        return model if self.dtype == "auto" else model.to(self.torch_dtype)

    @cached_property
    def model_path(self) -> str:
        """The random model saved once per (architecture, seed, tokenizer, library versions)."""
        import torch
        import transformers

        # Anything that changes the saved weights changes the key (torch's init scheme included).
        key = short_hash(
            self.architecture,
            self.seed,
            self.source.fingerprint(),
            torch.__version__,
            transformers.__version__,
        )
        target = self.backbones_dir / f"{self.name}-{key}"
        tokenizer_dir = Path(self.tokenizer_path)

        def build(tmp: Path) -> None:
            self.build_model().save_pretrained(tmp)
            copy_files(tokenizer_dir, tmp)

        build_once(target, build, what=f"{self.name} checkpoint")
        return str(target)
