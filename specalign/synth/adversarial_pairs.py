"""SpecAlign's multi-agent adversarial synthesis of preference pairs (RESEARCH.md s.1, 3-4).

For each round and each spec instance (8-13 rules): a Planner builds an attack strategy from a
seed prompt, the instance's rules and the most relevant entries of an experience pool; an
Attacker writes the probing user turn; a Defender answers with the instance rules as its system
turn. A binary judge asks, rule by rule, whether the reply complies; a reply that breaks at
least one rule is a successful attack and enters the pool. A compliant reply is then written
with the instance (and the broken rules) in context, must pass every rule and the quality
judge, and becomes `chosen`; the violating reply is `rejected`.

Two players fill attacker and defender and swap every `swap_every` rounds. A player is a
synthesizer configuration (its `synthesizer` keys over the run's, or a config of its own)
plus its sampling: the attacker's model plans and attacks, the defender's answers and
writes the compliant reply, and the run's synthesizer judges (docs/synthesis.md: what a
swap changes when both players are the same model). Every role of a round is one batched
request (the request cache makes a killed run resume without repeating a
call), and nothing depends on time, so the same config and cache give the same rows. The
final pool is saved next to the dataset as `experience_pool.jsonl`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

from specalign.errors import ConfigError
from specalign.pipeline.dataset_io import load_dataset
from specalign.pipeline.key_sections import key_synthesizer
from specalign.pipeline.step import Artifact
from specalign.synth.exchanges import (
    Exchange,
    SpecText,
    fill,
    pair_row,
    parse_plan,
    plan_schema,
)
from specalign.synth.experience_pool import ExperiencePool, render_experience
from specalign.synth.gates import exact_duplicates
from specalign.synth.llm_step import SynthesisStep
from specalign.synth.replies import parse_text

POOL_FILE = "experience_pool.jsonl"
PLAYER_KEYS = ("name", "synthesizer")  # a player's other keys are its sampling
SPEC_VARS = {"model_name", "provider"}
Player = dict[str, Any]


class AdversarialPairs(SynthesisStep):
    """Planner / attacker / defender rounds over spec instances -> DPO preference pairs."""

    consumes = ("dataset",)
    prompt_roles: ClassVar[dict[str, set[str]]] = {
        "planner": SPEC_VARS | {"rules", "rule_ids", "seed_prompt", "experience"},
        "attacker": SPEC_VARS | {"strategy", "target_rule", "target_rule_text", "seed_prompt"},
        "defender": SPEC_VARS | {"rules", "attack"},
        "compliant": SPEC_VARS | {"rules", "violated_rules", "attack"},
        "compliance_judge": SPEC_VARS | {"rule_id", "rule", "prompt", "response"},
        "quality_judge": SPEC_VARS | {"prompt", "response"},
    }

    def __init__(self, name: str, settings: dict[str, Any], ctx: Any) -> None:
        super().__init__(name, settings, ctx)
        self.players: list[Player] = list(self.setting("players") or [{"name": "A"}, {"name": "B"}])
        names = [str(p.get("name") or "") for p in self.players]
        if len(self.players) != 2 or len(set(names)) != 2 or not all(names):
            raise ConfigError(
                f"stage.steps.{name}.players: need exactly two players with distinct names "
                f"(got {names}). Fix: players: [{{name: A, temperature: 1.0}}, {{name: B, ...}}]."
            )
        self.threshold = float(self.setting("compliance_threshold", 0.5))
        self.player_llms: dict[str, Any] = {}

    # -- settings -------------------------------------------------------------------------
    def roles_in(self, rnd: int) -> tuple[Player, Player]:
        """(attacker, defender) of a round: the players swap every `swap_every` rounds."""
        every = int(self.setting("swap_every") or 0)
        first, second = self.players
        return (second, first) if every > 0 and (rnd // every) % 2 == 1 else (first, second)

    def player_sampling(self, player: Player) -> dict[str, Any]:
        return self.sampling(**{k: v for k, v in player.items() if k not in PLAYER_KEYS})

    def player_llm(self, player: Player) -> Any:
        """The player's backend: the step's own unless the player names a synthesizer (then
        built once per player, with its own budget, released with the step)."""
        if not player.get("synthesizer"):
            return self.llm
        name = str(player["name"])
        if name not in self.player_llms:
            from specalign.llm.factory import build_llm, player_synthesizer

            cfg = player_synthesizer(self.ctx, player["synthesizer"])
            self.player_llms[name] = build_llm(self.ctx, cfg=cfg)
        return self.player_llms[name]

    def release(self) -> None:
        for llm in self.player_llms.values():
            llm.close()
        self.player_llms.clear()
        super().release()

    def key_settings(self) -> dict[str, Any]:
        """Players' synthesizers without their transport settings (as the run's)."""
        settings = super().key_settings()
        settings["players"] = [
            {**p, "synthesizer": key_synthesizer(p["synthesizer"])} if p.get("synthesizer") else p
            for p in settings.get("players") or []
        ]
        return settings

    def bounds(self, what: str) -> tuple[int, int | None]:
        top = self.setting(f"{what}_max_words")
        return int(self.setting(f"{what}_min_words", 1)), None if top is None else int(top)

    def reply_schemas(self) -> dict[str, Any]:
        """The planner's, over every rule id of the spec (each request: its instance's)."""
        ids, (lo, hi) = [rule.id for rule in self.ctx.spec.rules], self.bounds("strategy")
        return {**super().reply_schemas(), "planner": plan_schema(ids, hi, lo)}

    def parse_reply(self, what: str) -> Any:
        lo, hi = self.bounds(what)
        return lambda text: parse_text(text, min_words=lo, max_words=hi)

    # -- the rounds -----------------------------------------------------------------------
    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        instances = list(load_dataset(inputs["dataset"]))
        cap = self.setting("max_instances")
        instances = instances[: int(cap)] if cap is not None else instances
        rounds = int(self.setting("rounds", 2))
        self.text = SpecText(self.ctx.spec, int(self.ctx.cfg.seed))
        self.compliance, self.quality = self.new_judge(), self.new_judge()
        self.counts: Counter[str] = Counter()
        pool = ExperiencePool(int(self.setting("pool_size", 64)))
        rows: list[dict[str, Any]] = []
        for rnd in range(rounds):
            kept = self.play_round(rnd, instances, pool)
            self.counts[f"pairs_round/{rnd}"] = len(kept)
            rows += kept
        rows = exact_duplicates(self.report, rows, "prompt")
        if self.setting("leak_ngram"):
            rows = self.leakage(inputs).gate(self.report, rows, ("prompt", "chosen", "rejected"))
        pool.save(out / POOL_FILE)
        metrics = self.publish(rows, out, "pairs")
        attacks, successes = self.counts["attacks"], self.counts["successes"]
        metrics.update(
            {
                "instances": len(instances),
                "rounds": rounds,
                "attacks": attacks,
                "successful_attacks": successes,
                "attack_success_rate": successes / attacks if attacks else 0.0,
                "pool_size": len(pool),
                "pool_added": pool.added,
                **{k: v for k, v in sorted(self.counts.items()) if "/" in k},
                **self.compliance.metrics("compliance_judge"),
                **self.quality.metrics("quality_judge"),
            }
        )
        return metrics

    def play_round(
        self, rnd: int, instances: list[dict[str, Any]], pool: ExperiencePool
    ) -> list[dict[str, Any]]:
        attacker, defender = self.roles_in(rnd)
        exchanges = [Exchange(inst, rnd, self.text.seed_prompt(inst, rnd)) for inst in instances]
        attacked = self.attack(
            exchanges, pool, self.player_sampling(attacker), self.player_llm(attacker)
        )
        # the defender answers under the instance; its reply is judged rule by rule
        chats = [
            self.prompts["defender"].render(
                **self.text.vars, rules=self.text.rules_block(ex.rule_ids), attack=ex.attack
            )
            for ex in attacked
        ]
        defend_sampling = self.player_sampling(defender)
        replies = self.ask(
            "defender",
            chats,
            self.parse_reply("response"),
            sampling=defend_sampling,
            llm=self.player_llm(defender),
        )
        judged = self.judge_rules(
            fill(attacked, replies, "violating"), "violating", "rejected_votes"
        )
        successes = []
        for ex in judged:
            votes = zip(ex.rule_ids, ex.rejected_votes, strict=True)
            ex.violated = [rule for rule, p in votes if p < self.threshold]
            if not ex.violated:
                self.report.drop("not_violating")
                continue
            successes.append(ex)
            pool.add(
                round=rnd,
                instance_id=ex.instance["instance_id"],
                families=ex.families,
                target_rule=ex.target_rule,
                violated_rule_ids=ex.violated,
                strategy=ex.strategy,
                attack=ex.attack,
            )
        for key, n in (("attacks", len(judged)), ("successes", len(successes))):
            self.counts[key] += n
            self.counts[f"{key}_round/{rnd}"] = n
        checked = self.write_compliant(successes, defend_sampling, self.player_llm(defender))
        return self.rate(checked, str(attacker["name"]), str(defender["name"]))

    def attack(
        self, exchanges: list[Exchange], pool: ExperiencePool, sampling: dict[str, Any], llm: Any
    ) -> list[Exchange]:
        """Planner (strategy and target rule, shown the nearest pool entries), then attacker."""
        shown = int(self.setting("pool_in_prompt", 3))
        chats = []
        for ex in exchanges:
            near = pool.top(
                shown,
                rule_ids=ex.rule_ids,
                families=ex.families,
                instance_id=ex.instance["instance_id"],
            )
            chats.append(
                self.prompts["planner"].render(
                    **self.text.vars,
                    rules=self.text.rules_block(ex.rule_ids),
                    rule_ids=", ".join(ex.rule_ids),
                    seed_prompt=ex.seed_prompt,
                    experience=render_experience(near),
                )
            )
        known, (lo, hi) = {r.id for r in self.ctx.spec.rules}, self.bounds("strategy")
        plans = self.ask(
            "planner",
            chats,
            lambda text: parse_plan(text, known, lo, hi),
            sampling=sampling,
            fix="Reply with only the JSON object.",
            schema=[plan_schema(ex.rule_ids, hi, lo) for ex in exchanges],
            llm=llm,
        )
        planned = []
        for ex, plan in zip(exchanges, plans, strict=True):
            if plan is None:
                continue
            if plan["target_rule"] not in ex.rule_ids:
                self.report.drop("planner_off_instance")
                continue
            ex.target_rule, ex.strategy = plan["target_rule"], plan["strategy"]
            planned.append(ex)
        chats = [
            self.prompts["attacker"].render(
                **self.text.vars,
                strategy=ex.strategy,
                target_rule=ex.target_rule,
                target_rule_text=self.ctx.spec.rule(ex.target_rule).text,
                seed_prompt=ex.seed_prompt,
            )
            for ex in planned
        ]
        attacks = self.ask(
            "attacker", chats, self.parse_reply("attack"), sampling=sampling, llm=llm
        )
        return fill(planned, attacks, "attack")

    def write_compliant(
        self, successes: list[Exchange], sampling: dict[str, Any], llm: Any
    ) -> list[Exchange]:
        """The chosen reply, written with the instance and the broken rules in context; it
        must comply with every rule of the instance."""
        chats = [
            self.prompts["compliant"].render(
                **self.text.vars,
                rules=self.text.rules_block(ex.rule_ids),
                violated_rules="\n".join(self.text.rule_line(r) for r in ex.violated),
                attack=ex.attack,
            )
            for ex in successes
        ]
        texts = self.ask(
            "compliant", chats, self.parse_reply("response"), sampling=sampling, llm=llm
        )
        written = []
        for ex, text in zip(successes, texts, strict=True):
            if text is not None and text.strip() == ex.violating.strip():
                self.report.drop("chosen_equals_rejected")
            elif text is not None:
                ex.compliant = text
                written.append(ex)
        checked = []
        for ex in self.judge_rules(written, "compliant", "chosen_votes"):
            if min(ex.chosen_votes) < self.threshold:
                self.report.drop("chosen_not_compliant")
            else:
                checked.append(ex)
        return checked

    def judge_rules(self, exchanges: list[Exchange], reply: str, votes_to: str) -> list[Exchange]:
        """One yes/no question per (reply, rule of its instance), all in one batch; P(Yes) per
        rule goes to `votes_to`. An exchange with an unanswered question is dropped."""
        chats, owners = [], []
        for i, ex in enumerate(exchanges):
            for rule_id in ex.rule_ids:
                chats.append(
                    self.prompts["compliance_judge"].render(
                        **self.text.vars,
                        rule_id=rule_id,
                        rule=self.text.rule_line(rule_id),
                        prompt=ex.attack,
                        response=getattr(ex, reply),
                    )
                )
                owners.append(i)
        votes: list[list[float | None]] = [[] for _ in exchanges]
        for i, p in zip(owners, self.compliance.yes_probability(chats), strict=True):
            votes[i].append(p)
        kept = []
        for ex, found in zip(exchanges, votes, strict=True):
            if any(p is None for p in found):
                self.report.drop("compliance_judge_reject")
                continue
            setattr(ex, votes_to, [float(p) for p in found if p is not None])
            kept.append(ex)
        return kept

    def rate(self, exchanges: list[Exchange], attacker: str, defender: str) -> list[dict[str, Any]]:
        """Quality of chosen and rejected (one batch); rows for chosen at `min_quality`+."""
        chats = [
            self.prompts["quality_judge"].render(**self.text.vars, prompt=ex.attack, response=text)
            for ex in exchanges
            for text in (ex.compliant, ex.violating)
        ]
        scores = self.quality.scale(chats)
        floor = float(self.setting("min_quality", 0.5))
        rows = []
        for n, ex in enumerate(exchanges):
            chosen, rejected = scores[2 * n], scores[2 * n + 1]
            if chosen is None or rejected is None:
                self.report.drop("quality_judge_reject")
            elif chosen < floor:
                self.report.drop("low_quality")
            else:
                rows.append(
                    pair_row(
                        ex,
                        attacker=attacker,
                        defender=defender,
                        threshold=self.threshold,
                        quality=(chosen, rejected),
                        provenance=self.provenance,
                    )
                )
        return rows
