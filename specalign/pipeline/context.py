"""What every step of one run shares: the composed config, paths, the spec, the backbone
and the tracker. Built once per run (and per sweep member); heavy parts load lazily."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from specalign.spec import Spec, load_spec


@dataclass
class RunContext:
    cfg: DictConfig
    run_dir: Path | None = None
    # the command line's overrides (`spec=pro_america`, `seed=1`): in a sweep, the member's
    # choices, which reports group by and W&B logs at the top of each run's config
    overrides: tuple[str, ...] = ()

    @cached_property
    def root(self) -> Path:
        return Path(self.cfg.paths.root).expanduser().resolve()

    @cached_property
    def store_dir(self) -> Path:
        return Path(self.cfg.paths.store).expanduser().resolve()

    @cached_property
    def cache_dir(self) -> Path:
        return Path(self.cfg.paths.cache).expanduser().resolve()

    @cached_property
    def spec(self) -> Spec:
        return load_spec(self.section("spec"))

    @cached_property
    def eval_spec_config(self) -> dict[str, Any]:
        """The spec the run is evaluated against (`eval_spec`), else the run's own spec."""
        return self.section("eval_spec") or self.section("spec")

    @cached_property
    def eval_spec(self) -> Spec:
        """Eval items, rules and skip reasons come from this spec (see conf/config.yaml)."""
        if self.eval_spec_config == self.section("spec"):
            return self.spec
        return load_spec(self.eval_spec_config)

    def uses_section(self, name: str) -> Any:
        """A `uses` name as config: a top-level group, or `eval_spec` (the eval spec's config,
        the run's spec when none is set)."""
        return self.eval_spec_config if name == "eval_spec" else self.section(name)

    @cached_property
    def backbone(self) -> Any:
        """The instantiated backbone (loads no weights until a step asks for them)."""
        return instantiate(self.cfg.backbone, cache_dir=str(self.cache_dir), _convert_="all")

    @cached_property
    def tracker(self) -> Any:
        """The logger group's tracker on rank 0; the others of a multi-process run log nothing."""
        from specalign.pipeline import distributed
        from specalign.tracking.null_tracker import NullTracker

        if not distributed.is_main():
            return NullTracker()
        return instantiate(self.cfg.logger, _convert_="all")

    def section(self, name: str) -> Any:
        """A resolved top-level config value as plain Python (what libraries receive)."""
        value = OmegaConf.select(self.cfg, name)
        if isinstance(value, DictConfig) or OmegaConf.is_list(value):
            return OmegaConf.to_container(value, resolve=True)
        return value
