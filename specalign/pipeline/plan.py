"""Turn `cfg.stage.steps` into an ordered plan: classes located, inputs wired, keys computed.

Everything here is cheap and loads no model, so `dry_run=true` and the first check of a run
(is every step implemented? does every input exist and have the right kind?) happen before
any work starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hydra.utils import get_class

from specalign.errors import ConfigError, StepNotImplementedError
from specalign.pipeline.context import RunContext
from specalign.pipeline.key_sections import key_section
from specalign.pipeline.keys import content_key
from specalign.pipeline.step import Step

RESERVED = ("_target_", "inputs")


@dataclass
class PlannedStep:
    name: str
    step: Step
    inputs: dict[str, str]  # slot -> upstream step name
    key: str
    material: dict[str, Any]  # what the key hashes, recorded in the manifest

    @property
    def produces(self) -> str:
        return self.step.produces


@dataclass
class Plan:
    stage: str
    steps: list[PlannedStep]

    def __getitem__(self, name: str) -> PlannedStep:
        return next(p for p in self.steps if p.name == name)


def locate_step_class(stage: str, name: str, target: str | None) -> type[Step]:
    if not target:
        raise ConfigError(f"stage={stage}: step '{name}' has no _target_ naming its class.")
    try:
        cls = get_class(target)
    except Exception as err:
        raise StepNotImplementedError(
            f"stage={stage}: not implemented yet: {name} ({target}). "
            "Pick a stage whose steps exist, e.g. stage=sft."
        ) from err
    if not (isinstance(cls, type) and issubclass(cls, Step)):
        raise ConfigError(f"stage={stage}: step '{name}': {target} is not a specalign Step.")
    return cls


def key_material(step: Step, ctx: RunContext, input_keys: dict[str, str]) -> dict[str, Any]:
    """What a step's output depends on: its class, settings, the config groups it uses
    (pipeline/key_sections.py), its inputs' keys and any file fingerprints. Nothing else
    (not paths, not loggers)."""
    cls = type(step)
    material: dict[str, Any] = {
        "step": step.name,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "version": cls.version,
        "settings": step.key_settings(),
        "uses": {name: key_section(name, ctx.uses_section(name)) for name in cls.uses},
        "inputs": input_keys,
    }
    if "spec" in cls.uses:
        material["spec_hash"] = ctx.spec.hash
    if "eval_spec" in cls.uses:  # evaluation steps: the spec they score against
        material["eval_spec_hash"] = ctx.eval_spec.hash
    extra = step.fingerprint()
    if extra:
        material["fingerprint"] = extra
    return material


def build_plan(ctx: RunContext) -> Plan:
    stage = str(ctx.cfg.stage.name)
    # a stage that extends another (defaults list) removes a step by setting it to null
    steps_cfg = {n: c for n, c in (ctx.section("stage.steps") or {}).items() if c is not None}
    if not steps_cfg:
        raise ConfigError(f"stage={stage}: `steps` is empty; nothing to run.")
    classes = {n: locate_step_class(stage, n, c.get("_target_")) for n, c in steps_cfg.items()}
    planned: dict[str, PlannedStep] = {}
    for name in dependency_order(steps_cfg):
        step_cfg = steps_cfg[name]
        cls = classes[name]
        # a slot set to null is unwired (an optional input a preset or override turns off)
        inputs = {k: v for k, v in (step_cfg.get("inputs") or {}).items() if v is not None}
        settings = {k: v for k, v in step_cfg.items() if k not in RESERVED}
        step = cls(name, settings, ctx)
        check_inputs(stage, name, step, inputs, planned)
        input_keys = {slot: planned[src].key for slot, src in sorted(inputs.items())}
        material = key_material(step, ctx, input_keys)
        planned[name] = PlannedStep(name, step, inputs, content_key(material), material)
    return Plan(stage, list(planned.values()))


def dependency_order(steps_cfg: dict[str, Any]) -> list[str]:
    """Declaration order, except that a step waits for the steps its inputs name. A stage
    can then extend another through its defaults list (msm+sft adds SFT after msm's steps,
    and its `eval` moves after `sft`). Unknown sources and cycles are left in declaration
    order for `check_inputs` to report."""
    needs = {
        name: {src for src in (cfg.get("inputs") or {}).values() if src in steps_cfg}
        for name, cfg in steps_cfg.items()
    }
    order: list[str] = []
    while len(order) < len(steps_cfg):
        ready = [n for n in steps_cfg if n not in order and needs[n] <= set(order)]
        if not ready:  # a cycle: keep declaration order, check_inputs names the culprit
            return order + [n for n in steps_cfg if n not in order]
        order.append(ready[0])
    return order


def check_inputs(
    stage: str, name: str, step: Step, inputs: dict[str, str], planned: dict[str, Any]
) -> None:
    """Every required slot wired, every source an earlier step producing the right kind."""
    cls = type(step)
    slots = set(cls.consumes) | set(cls.optional)
    for slot, source in inputs.items():
        if slot not in slots:
            raise ConfigError(
                f"stage={stage}: step '{name}' has no input '{slot}' (it takes {sorted(slots)})."
            )
        if source not in planned:
            raise ConfigError(
                f"stage={stage}: step '{name}' input '{slot}' names '{source}', which is not an "
                f"earlier step (earlier: {list(planned) or 'none'}). Fix: "
                f"stage.steps.{name}.inputs.{slot}=<one of them>, or =null if the step can "
                "do without it."
            )
        kind = cls.slot_kinds.get(slot, slot)
        if planned[source].produces != kind:
            raise ConfigError(
                f"stage={stage}: step '{name}' input '{slot}' needs a {kind} but '{source}' "
                f"produces a {planned[source].produces}."
            )
    missing = [slot for slot in step.required_inputs() if slot not in inputs]
    if missing:
        raise ConfigError(
            f"stage={stage}: step '{name}' needs inputs {missing}: add "
            f"`inputs: {{{missing[0]}: <earlier step>}}` under stage.steps.{name}."
        )
