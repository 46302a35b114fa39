"""Backbones: where a base model comes from and how to tokenize, load and adapt it.

Hydra config group `backbone` (conf/backbone/*.yaml) names one of these classes with
`_target_`; the app instantiates it with `cache_dir=` and uses the `Backbone` interface.
Importing this package is cheap: torch and transformers load only when a model is needed.
"""

from specalign.backbone.base import (
    DEFAULT_LORA_TARGETS,
    DTYPES,
    SHARDING_PRESETS,
    Backbone,
    BackboneUnavailableError,
)
from specalign.backbone.embedded_gguf import EmbeddedGGUFBackbone
from specalign.backbone.hub import HubBackbone
from specalign.backbone.tiny_random import TinyRandomBackbone

__all__ = [
    "DEFAULT_LORA_TARGETS",
    "DTYPES",
    "SHARDING_PRESETS",
    "Backbone",
    "BackboneUnavailableError",
    "EmbeddedGGUFBackbone",
    "HubBackbone",
    "TinyRandomBackbone",
]
