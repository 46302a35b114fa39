"""The common interface every backbone (embedded GGUF, tiny random, hub) implements.

The rest of specalign only ever talks to a `Backbone`: Hydra instantiates one from
`conf/backbone/<option>.yaml` and the stages ask it for a tokenizer, a model, a local checkpoint
directory (`model_path`, for TRL / PEFT / vLLM, which want a path) and rendered chat text. Where the
weights come from is each subclass's business.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specalign.errors import SpecAlignError

if TYPE_CHECKING:  # torch / transformers are imported lazily: instantiating a config stays cheap.
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger("specalign.backbone")

DTYPES = ("float32", "bfloat16", "float16", "auto")
SHARDING_PRESETS = ("none", "fsdp", "zero3")
# All attention and MLP projections of Llama-style decoders (Llama, Qwen2/3, Gemma2, SmolLM2).
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class BackboneUnavailableError(SpecAlignError, RuntimeError):
    """The backbone's weights cannot be obtained here (no hub access, missing package or path).

    A distinct type so the app can print the fix (the message says it) instead of a traceback.
    """


def plain(value: Any) -> Any:
    """Turn an OmegaConf container into plain Python; leave anything else alone.

    The app converts configs before instantiating, but `hydra.utils.instantiate` on a raw
    `OmegaConf.load` (as the tests and ad-hoc scripts do) hands over ListConfig / DictConfig.
    """
    try:
        from omegaconf import OmegaConf
    except ImportError:  # pragma: no cover - omegaconf comes with hydra
        return value
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


class Backbone:
    """A base model plus how to tokenize, load, shard and LoRA-adapt it.

    Fields: `name` (labels cache directories and logs), `dtype` (one of DTYPES), `max_length`
    (tokens per training / eval sequence), `chat_template_kwargs` (extra variables for the chat
    template, e.g. Qwen3's `enable_thinking`), `lora_target_modules`, `sharding` (a preset name
    from SHARDING_PRESETS that the trainer maps to FSDP / ZeRO-3) and `attn_implementation`.
    """

    def __init__(
        self,
        *,
        name: str,
        cache_dir: str | Path,
        dtype: str = "float32",
        max_length: int = 1024,
        chat_template_kwargs: Mapping[str, Any] | None = None,
        lora_target_modules: Iterable[str] = DEFAULT_LORA_TARGETS,
        sharding: str = "none",
        attn_implementation: str = "sdpa",
    ) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"backbone {name!r}: dtype must be one of {DTYPES}, got {dtype!r}")
        if sharding not in SHARDING_PRESETS:
            raise ValueError(
                f"backbone {name!r}: sharding must be one of {SHARDING_PRESETS}, got {sharding!r}"
            )
        if int(max_length) <= 0:
            raise ValueError(f"backbone {name!r}: max_length must be positive, got {max_length}")
        self.name = str(name)
        self.cache_dir = Path(cache_dir)
        self.dtype = dtype
        self.max_length = int(max_length)
        self.chat_template_kwargs: dict[str, Any] = dict(plain(chat_template_kwargs) or {})
        targets = plain(lora_target_modules)
        targets = [targets] if isinstance(targets, str) else targets  # "all-linear" stays whole
        self.lora_target_modules: list[str] = [str(m) for m in targets]
        self.sharding = sharding
        self.attn_implementation = attn_implementation

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dtype={self.dtype!r})"

    @property
    def backbones_dir(self) -> Path:
        """Where one-time conversions live: `<cache_dir>/backbones/`."""
        return self.cache_dir / "backbones"

    @property
    def model_path(self) -> str:
        """A local directory holding a normal HF checkpoint (model + tokenizer)."""
        raise NotImplementedError

    @property
    def tokenizer_path(self) -> str:
        """Where `load_tokenizer` reads from; subclasses point it at something cheaper to get."""
        return self.model_path

    @property
    def torch_dtype(self) -> torch.dtype | str:
        """`dtype` as what `from_pretrained(dtype=...)` takes ("auto" passes through)."""
        if self.dtype == "auto":
            return "auto"
        import torch

        return getattr(torch, self.dtype)

    def load_tokenizer(self) -> PreTrainedTokenizerBase:
        """The tokenizer with a pad token (eos when it has none); padding side is the caller's."""
        from transformers import AutoTokenizer

        return ensure_pad_token(AutoTokenizer.from_pretrained(self.tokenizer_path))

    def load_model(
        self, device_map: str | dict[str, Any] | None = None, **from_pretrained: Any
    ) -> PreTrainedModel:
        """The model in `dtype`, exactly as `from_pretrained` returns it (no eval()/train()).

        Extra keyword arguments (e.g. QLoRA's `quantization_config`) go to `from_pretrained`.
        """
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(
            self.model_path,
            dtype=self.torch_dtype,
            attn_implementation=self.attn_implementation,
            device_map=device_map,
            **from_pretrained,
        )

    def apply_chat_template(
        self,
        tokenizer: PreTrainedTokenizerBase,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool,
    ) -> str:
        """Render `messages` as text with this backbone's `chat_template_kwargs` applied.

        One place for it so that training, generation and evaluation never disagree about
        e.g. Qwen3's thinking block.
        """
        text = tokenizer.apply_chat_template(
            plain(messages),
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            **self.chat_template_kwargs,
        )
        if not isinstance(text, str):  # pragma: no cover - guards against API drift
            raise TypeError(f"apply_chat_template returned {type(text).__name__}, expected str")
        return text


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Batching needs a pad token; Llama-3 style tokenizers ship without one, so reuse eos."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError("tokenizer has neither a pad nor an eos token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
