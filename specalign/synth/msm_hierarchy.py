"""The top of MSM's document hierarchy (RESEARCH.md s.2): spec -> domains -> subdomains ->
assertions, one cached step per level, so changing how many documents to write never
regenerates the levels above.

Two modes (the step setting `mode`, overridden by a spec's `msm_mode`):
- `hierarchy`: each level is one LLM call per parent with the full spec in context;
  subdomains must quote the spec (an excerpt that is not in it is dropped as invented),
  and assertions are extracted, never invented.
- `rules`: for specs that are numbered rule lists, and for small models that cannot extract
  reliably: domains are the spec's sections, subdomains its rules, and each rule (with the
  "why" the spec gives) is one assertion. No LLM call; documents are then written per rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from specalign.errors import ConfigError
from specalign.llm import schemas
from specalign.pipeline.dataset_io import load_dataset
from specalign.pipeline.step import Artifact
from specalign.synth.gates import tokens
from specalign.synth.llm_step import SynthesisStep
from specalign.synth.replies import parse_list, parse_objects, words

MODES = ("hierarchy", "rules")
LABELS = ("behavior", "value", "preference", "belief", "tone")
SPEC_VARS = {"spec", "model_name", "provider", "count"}


class HierarchyLevel(SynthesisStep):
    """A level of the hierarchy: `mode` decides between an LLM call and the spec's structure."""

    role = ""

    @property
    def mode(self) -> str:
        mode = str(self.ctx.spec.settings.get("msm_mode") or self.setting("mode", "hierarchy"))
        if mode not in MODES:
            raise ConfigError(
                f"stage.steps.{self.name}.mode={mode!r} (or spec msm_mode): choose {list(MODES)}."
            )
        return mode

    def needed_prompts(self) -> dict[str, set[str]]:
        return self.prompt_roles if self.mode == "hierarchy" else {}

    def spec_vars(self) -> dict[str, Any]:
        spec = self.ctx.spec
        return {"spec": spec.text, "model_name": spec.model_name, "provider": spec.provider}

    def fingerprint(self) -> dict[str, Any]:
        return {**super().fingerprint(), "mode": self.mode}


class Domains(HierarchyLevel):
    """Broad topic areas of the spec (1-4 words each)."""

    prompt_roles: ClassVar[dict[str, set[str]]] = {"domains": SPEC_VARS}

    def reply_schemas(self) -> dict[str, Any]:
        name = schemas.text(int(self.setting("max_words", 4)))
        items = schemas.items(name, int(self.setting("count", 6)))
        return {**super().reply_schemas(), "domains": items}

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        if self.mode == "rules":
            sections = dict.fromkeys(
                r.section[0] if r.section else "General" for r in self.ctx.spec.rules
            )
            names = list(sections)
        else:
            count = int(self.setting("count", 6))
            chat = self.prompts["domains"].render(**self.spec_vars(), count=count)
            (names,) = self.ask(
                "domains",
                [chat],
                lambda t: parse_list(
                    t, max_items=count, max_words=int(self.setting("max_words", 4))
                ),
                schema=self.reply_schemas()["domains"],
            )
            names = names or []
        rows = [
            {"domain_id": f"d{i:02d}", "domain": name, **self.provenance}
            for i, name in enumerate(names)
        ]
        return {**self.publish(rows, out, "domains"), "mode": self.mode}


def matching_rules(excerpt: str, rules: list[Any], min_overlap: float) -> list[str]:
    """Ids of the rules an excerpt quotes: most of a rule's words appear in the excerpt."""
    have = set(tokens(excerpt))
    scored = []
    for rule in rules:
        words_ = set(tokens(rule.text))
        if words_:
            scored.append((len(words_ & have) / len(words_), rule.id))
    return [rule_id for score, rule_id in sorted(scored, reverse=True) if score >= min_overlap]


def quoted_in(excerpt: str, spec_text: str, min_overlap: float) -> bool:
    """Whether an excerpt is (nearly) verbatim: most of its word 5-grams occur in the spec."""
    ex, sp = tokens(excerpt), tokens(spec_text)
    n = min(5, len(ex))
    if n == 0:
        return False
    grams = [tuple(ex[i : i + n]) for i in range(len(ex) - n + 1)]
    spec_grams = {tuple(sp[i : i + n]) for i in range(len(sp) - n + 1)}
    return sum(g in spec_grams for g in grams) / len(grams) >= min_overlap


class Subdomains(HierarchyLevel):
    """Narrower situations within each domain, each tied to a verbatim spec excerpt."""

    consumes = ("dataset",)
    prompt_roles: ClassVar[dict[str, set[str]]] = {"subdomains": SPEC_VARS | {"domain"}}

    def reply_schemas(self) -> dict[str, Any]:
        entry = schemas.record(
            name=schemas.text(6), context=schemas.text(60), excerpt=schemas.text(120)
        )
        items = schemas.items(entry, int(self.setting("count", 4)))
        return {**super().reply_schemas(), "subdomains": items}

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        domains = list(load_dataset(inputs["dataset"]))
        spec = self.ctx.spec
        rows: list[dict[str, Any]] = []
        if self.mode == "rules":
            by_name = {d["domain"]: d for d in domains}
            for rule in spec.rules:
                parent = by_name[rule.section[0] if rule.section else "General"]
                rows.append(
                    subdomain_row(parent, rule.id, rule.rationale, rule.text, [rule.id], len(rows))
                )
        else:
            count = int(self.setting("count", 4))
            chats = [
                self.prompts["subdomains"].render(
                    **self.spec_vars(), domain=d["domain"], count=count
                )
                for d in domains
            ]
            overlap = float(self.setting("min_excerpt_overlap", 0.8))

            def check(obj: dict[str, Any]) -> dict[str, Any]:
                fields = {k: str(obj.get(k, "")).strip() for k in ("name", "context", "excerpt")}
                if not all(fields.values()):
                    raise ValueError("each object needs non-empty name, context and excerpt")
                if not quoted_in(fields["excerpt"], spec.text, overlap):
                    self.report.drop("invented_excerpt")
                    raise ValueError("the excerpt is not copied word for word from the spec")
                return fields

            replies = self.ask(
                "subdomains",
                chats,
                lambda t: parse_objects(t, check, max_items=count),
                schema=self.reply_schemas()["subdomains"],
            )
            match = float(self.setting("min_rule_overlap", 0.6))
            for parent, items in zip(domains, replies, strict=True):
                for item in items or []:
                    ids = matching_rules(item["excerpt"], list(spec.rules), match)
                    rows.append(
                        subdomain_row(
                            parent, item["name"], item["context"], item["excerpt"], ids, len(rows)
                        )
                    )
        return {**self.publish(rows, out, "subdomains"), "mode": self.mode}


def subdomain_row(
    parent: dict[str, Any], name: str, context: str, excerpt: str, rule_ids: list[str], index: int
) -> dict[str, Any]:
    return {
        **parent,
        "subdomain_id": f"{parent['domain_id']}-s{index:03d}",
        "subdomain": name,
        "context": context,
        "excerpt": excerpt,
        "rule_ids": rule_ids,
    }


class Assertions(HierarchyLevel):
    """What the spec asserts about the model in each subdomain, with the reason it gives."""

    consumes = ("dataset",)
    prompt_roles: ClassVar[dict[str, set[str]]] = {
        "assertions": SPEC_VARS | {"domain", "subdomain", "context", "excerpt", "labels"}
    }

    def reply_schemas(self) -> dict[str, Any]:
        entry = schemas.record(
            assertion=schemas.text(int(self.setting("max_words", 60))),
            name=schemas.text(5),
            explanation=schemas.text(80),
            label=schemas.one_of(list(self.setting("labels", LABELS))),
        )
        items = schemas.items(entry, int(self.setting("count", 4)))
        return {**super().reply_schemas(), "assertions": items}

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        subdomains = list(load_dataset(inputs["dataset"]))
        rows: list[dict[str, Any]] = []
        if self.mode == "rules":
            for sub in subdomains:
                rows.append(
                    assertion_row(
                        sub, sub["excerpt"], sub["subdomain"], sub["context"], "behavior", 0
                    )
                )
        else:
            count = int(self.setting("count", 4))
            labels = list(self.setting("labels", LABELS))
            chats = [
                self.prompts["assertions"].render(
                    **self.spec_vars(),
                    count=count,
                    labels=" | ".join(labels),
                    **{k: sub[k] for k in ("domain", "subdomain", "context", "excerpt")},
                )
                for sub in subdomains
            ]
            max_words = int(self.setting("max_words", 60))

            def check(obj: dict[str, Any]) -> dict[str, Any]:
                fields = {
                    k: str(obj.get(k, "")).strip()
                    for k in ("assertion", "name", "explanation", "label")
                }
                if not fields["assertion"] or words(fields["assertion"]) > max_words:
                    self.report.drop("invalid_assertion")
                    raise ValueError(f"'assertion' must be 1-{max_words} words")
                if fields["label"].lower() not in labels:
                    self.report.drop("invalid_assertion")
                    raise ValueError(f"'label' must be one of {labels}")
                fields["label"] = fields["label"].lower()
                return fields

            replies = self.ask(
                "assertions",
                chats,
                lambda t: parse_objects(t, check, max_items=count),
                schema=self.reply_schemas()["assertions"],
            )
            for sub, items in zip(subdomains, replies, strict=True):
                for i, item in enumerate(items or []):
                    rows.append(
                        assertion_row(
                            sub,
                            item["assertion"],
                            item["name"],
                            item["explanation"],
                            item["label"],
                            i,
                        )
                    )
        return {**self.publish(rows, out, "assertions"), "mode": self.mode}


def assertion_row(
    sub: dict[str, Any], assertion: str, name: str, explanation: str, label: str, index: int
) -> dict[str, Any]:
    return {
        **sub,
        "assertion_id": f"{sub['subdomain_id']}-a{index:02d}",
        "assertion": assertion,
        "name": name,
        "explanation": explanation,
        "label": label,
    }
