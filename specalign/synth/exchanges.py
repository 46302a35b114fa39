"""The pieces of SpecAlign's adversarial synthesis that need no LLM: one exchange's state, the
spec text the prompts show, the planner reply parser and the preference-pair row."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from specalign.llm import schemas
from specalign.llm.structured import json_object
from specalign.synth.replies import parse_text


@dataclass
class Exchange:
    """One instance in one round, filled in as the roles answer."""

    instance: dict[str, Any]
    round: int
    seed_prompt: str
    strategy: str = ""
    target_rule: str = ""
    attack: str = ""
    violating: str = ""  # the defender's reply (rejected)
    compliant: str = ""  # the reply written with the instance in context (chosen)
    rejected_votes: list[float] = field(default_factory=list)  # P(complies) per rule
    chosen_votes: list[float] = field(default_factory=list)
    violated: list[str] = field(default_factory=list)

    @property
    def rule_ids(self) -> list[str]:
        return list(self.instance["rule_ids"])

    @property
    def families(self) -> list[str]:
        return list(self.instance.get("families") or [])


def fill(exchanges: list[Exchange], values: list[Any], attr: str) -> list[Exchange]:
    """The exchanges whose value came back (rejects were counted by `ask`), filled in."""
    kept = []
    for ex, value in zip(exchanges, values, strict=True):
        if value is not None:
            setattr(ex, attr, value)
            kept.append(ex)
    return kept


class SpecText:
    """The spec as the prompts show it: the assistant's name, rules with ids, seeds."""

    def __init__(self, spec: Any, seed: int) -> None:
        self.spec = spec
        self.seed = seed
        self.vars = {"model_name": spec.model_name, "provider": spec.provider or "its provider"}

    def rule_line(self, rule_id: str) -> str:
        rule = self.spec.rule(rule_id)
        extra = f" Exception: {rule.exception}" if rule.exception else ""
        return f"[{rule.id}] {rule.text}{extra}"

    def rules_block(self, rule_ids: list[str]) -> str:
        """Numbered, in the instance's conflict-resolution order (earlier wins)."""
        return "\n".join(f"{n}. {self.rule_line(r)}" for n, r in enumerate(rule_ids, start=1))

    def seed_prompt(self, instance: dict[str, Any], rnd: int) -> str:
        """A rule's example when it has one, else a short seed from the rule's text; the rule
        (and example) drawn with a generator seeded by (run seed, instance, round)."""
        rng = random.Random(f"{self.seed}:{instance['instance_id']}:{rnd}")
        rule = self.spec.rule(rng.choice(list(instance["rule_ids"])))
        if rule.examples:
            return rng.choice(list(rule.examples))
        return f"A user request where this rule is tested: {rule.text}"


def plan_schema(rule_ids: list[str], max_words: int | None, min_words: int = 1) -> dict[str, Any]:
    """The planner's reply: a target rule among the instance's ids, and a strategy."""
    strategy = schemas.text(max_words, min_words)
    return schemas.record(target_rule=schemas.one_of(rule_ids), strategy=strategy)


def parse_plan(text: str, known: set[str], min_words: int, max_words: int | None) -> dict[str, str]:
    """The planner's {"target_rule", "strategy"}; the rule must be one of the spec's ids
    (whether it belongs to the instance is checked by the caller, per exchange)."""
    data = json_object(text)
    target, strategy = str(data.get("target_rule", "")).strip().strip("[]"), data.get("strategy")
    if not isinstance(strategy, str) or not strategy.strip():
        raise ValueError('"strategy" must be a non-empty string')
    if target not in known:
        raise ValueError(f'"target_rule" {target!r} is not one of the listed rule ids')
    return {
        "target_rule": target,
        "strategy": parse_text(strategy, min_words=min_words, max_words=max_words),
    }


def pair_row(
    ex: Exchange,
    *,
    attacker: str,
    defender: str,
    threshold: float,
    quality: tuple[float, float],
    provenance: dict[str, Any],
) -> dict[str, Any]:
    """A preference pair in TRL's conversational form, with its rules, roles and scores."""

    def compliance(votes: list[float]) -> float:
        return sum(p >= threshold for p in votes) / len(votes)

    return {
        "pair_id": f"{ex.instance['instance_id']}:r{ex.round}",
        "prompt": [{"role": "user", "content": ex.attack}],
        "chosen": [{"role": "assistant", "content": ex.compliant}],
        "rejected": [{"role": "assistant", "content": ex.violating}],
        "rule_ids": ex.rule_ids,
        "violated_rule_ids": ex.violated,
        "instance_id": ex.instance["instance_id"],
        "strategy": ex.strategy,
        "target_rule": ex.target_rule,
        "seed_prompt": ex.seed_prompt,
        "round": ex.round,
        "attacker": attacker,
        "defender": defender,
        "chosen_compliance": compliance(ex.chosen_votes),
        "rejected_compliance": compliance(ex.rejected_votes),
        "chosen_quality": float(quality[0]),
        "rejected_quality": float(quality[1]),
        **provenance,
    }
