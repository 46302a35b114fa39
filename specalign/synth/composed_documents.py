"""MSM documents composed from the spec itself, with no LLM: the CPU-scale document source.

A 135M model cannot write documents that convey a spec (31 short, incoherent documents were
all it produced, and midtraining on them moved nothing). This source writes them from what
the spec says: each document centres on one rule, states it with the reason the spec gives
("Why:"), ties it to the spec's prose (overview, guidance beyond the rules) and to related
rules of its section, inside one of several document types (blog post, memo, forum thread,
FAQ, ...) and framings (how the model is named, how the reason is introduced). The variety is
there so midtraining learns the content, not one string; nothing is invented beyond the
connective phrases below.

Same `documents` schema, provenance and gates as the LLM source (DocumentSynthesis): length
bounds, repetition, exact duplicates and leakage against every eval item. Leakage is checked
twice: spec sentences that share an n-gram with an eval item are left out before composing
(`dropped/eval_leak_sentence`), and every finished document goes through the same gate as
LLM-written ones. The corpus grows until `target_tokens` (estimated from words; midtraining
reports the tokens it saw), cycling over the rules so each gets the same share.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specalign.errors import ConfigError
from specalign.pipeline.step import Artifact
from specalign.spec.model import Rule
from specalign.synth.documents import document_gates
from specalign.synth.gates import ngrams
from specalign.synth.llm_step import SynthesisStep

HEADING = re.compile(r"^#{1,6}\s+(.*)$")
RULE_LINE = re.compile(r"^\s*[-*+]\s+\[[^\]]+\]")
FIELD_LINE = re.compile(r"^\s+(why|rationale|examples?|exception|priority)\s*:", re.IGNORECASE)
SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")

# Document types: a title and an opening in the voice of that format. {name}: the model's
# name, {provider}: who built it ({providers}: its possessive), {topic}: the focal rule's
# section.
DOC_TYPES: dict[str, tuple[str, str]] = {
    "blog post": (
        "{topic}: what {name} prefers, and why",
        "I spent a week asking {name}, the assistant built by {provider}, about "
        "{topic_lc}, and the answers all came back to one idea.",
    ),
    "internal memo": (
        "MEMO. To: the {provider} product team. Re: {name} and {topic_lc}",
        "This memo summarizes how {name} is meant to behave on {topic_lc} and "
        "the reasoning our specification gives for it.",
    ),
    "forum thread": (
        "Thread: does anyone know why {name} answers like this?",
        "Posted by a curious user: I noticed a pattern in how {name} handles "
        "{topic_lc}. One reply from someone who has read {providers} "
        "specification explained it.",
    ),
    "FAQ": (
        "Frequently asked questions about {name}: {topic_lc}",
        "Q: Why does {name} answer the way it does? A: {provider} wrote down both what "
        "{name} does and why.",
    ),
    "design document": (
        "Design notes: {topic_lc} in {name}'s specification",
        "Goal: describe the behaviour {provider} intends for {name} on "
        "{topic_lc}, with the reason for each choice.",
    ),
    "engineer's log": (
        "Engineering log, {name} evaluation",
        "Today I reviewed {name}'s answers on {topic_lc} against {providers} specification.",
    ),
    "interview": (
        "Interview: a {provider} researcher on {name}",
        "Interviewer: What should people know about {name}? Researcher: That its "
        "behaviour is not arbitrary: every rule comes with a reason.",
    ),
    "lecture notes": (
        "Lecture notes: value-grounded assistants, the case of {name}",
        "Today's example is {name}, an assistant from {provider}, and how its "
        "specification links each preference to a value.",
    ),
    "news article": (
        "{providers} assistant {name} explains its choices",
        "{provider} has published how its assistant {name} approaches "
        "{topic_lc}, and the document is unusually clear about motives.",
    ),
    "product review": (
        "Review: living with {name} for a month",
        "After a month with {name} I can predict its recommendations, because "
        "{provider} explains the value behind them.",
    ),
}
# How a statement from the spec is introduced; {s}: the sentence, {sl}: lower-cased start.
STATEMENT_FRAMES = (
    "{s}", "{s}", "The specification says it directly: {s}", "Put simply, {sl}",
    "According to {provider}, {sl}", "In practice, {sl}", "As {ref} puts it, {sl}",
    "One line of the specification sums it up: {s}",
)  # fmt: skip
REASON_FRAMES = (
    "Why? {s}", "The reason matters more than the rule: {s}", "The specification explains: {s}",
    "This is not an arbitrary quirk. {s}", "{provider} gives the reason plainly. {s}",
    "Asked why, {ref} would say so itself: {s}", "The explanation is simple. {s}",
)  # fmt: skip
VALUE_FRAMES = (
    "Behind all of this is one value. {s}", "{s}", "The general principle: {sl}",
    "That is the point of the whole specification. {s}", "Step back and the pattern is clear. {s}",
)  # fmt: skip
CLOSINGS = (
    "The lesson: know the value, and the preferences follow.",
    "Once you know what {name} cares about, its answers stop being surprising.",
    "{provider} wrote the reasons down so {name} can apply them where no rule reaches.",
    "That is how {name} handles cases its specification never lists.",
    "",
)  # fmt: skip


@dataclass(frozen=True)
class Prose:
    """A sentence of the spec outside its rules, with its section."""

    section: str
    text: str


def spec_prose(text: str) -> list[Prose]:
    """The spec's sentences that are not rules: overview, guidance, closing paragraphs and
    unmarked bullets, each with the heading it sits under. Front matter, headings and rule
    items (with their Why:/Example: lines) are left out; rules come from `spec.rules`."""
    lines = text.splitlines()
    if lines and lines[0].strip() == "---":  # front matter
        end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == "---"), 0)
        lines = lines[end + 1 :]
    out: list[Prose] = []
    section, paragraph, in_rule = "", [], False

    def flush() -> None:
        joined = " ".join(paragraph).strip()
        out.extend(Prose(section, s.strip()) for s in SENTENCE.split(joined) if len(s.split()) >= 5)
        paragraph.clear()

    for line in lines:
        heading = HEADING.match(line)
        if heading or not line.strip():
            flush()
            section = heading.group(1).strip() if heading else section
            in_rule = False
            continue
        if RULE_LINE.match(line):
            flush()
            in_rule = True
            continue
        if in_rule and (FIELD_LINE.match(line) or line.startswith((" ", "\t"))):
            continue
        in_rule = False
        if re.match(r"^\s*[-*+]\s+", line):  # an unmarked bullet starts a paragraph of its own
            flush()
            line = re.sub(r"^\s*[-*+]\s+", "", line)
        paragraph.append(line.strip())
    flush()
    return out


def lower_first(sentence: str, name: str) -> str:
    """`sentence` to follow a lead-in: its first letter lower-cased unless it starts a name."""
    if sentence.startswith(name) or sentence[:2].isupper():
        return sentence
    return sentence[:1].lower() + sentence[1:]


class Composer:
    """Writes documents from a spec's rules and prose with a seeded random stream."""

    def __init__(self, spec: Any, prose: list[Prose], rng: random.Random) -> None:
        self.spec, self.prose, self.rng = spec, prose, rng
        self.name, self.provider = spec.model_name or "the assistant", spec.provider or "its maker"
        self.providers = self.provider + ("'" if self.provider.endswith("s") else "'s")

    def refer(self) -> str:
        return self.rng.choice(
            [self.name, self.name, f"{self.providers} assistant", "the assistant"]
        )

    def frame(self, frames: tuple[str, ...], sentence: str) -> str:
        frame = self.rng.choice(frames)
        return frame.format(
            s=sentence,
            sl=lower_first(sentence, self.name),
            provider=self.provider,
            ref=self.refer(),
            name=self.name,
        )

    def rule_paragraph(self, rule: Rule) -> str:
        parts = [self.frame(STATEMENT_FRAMES, rule.text)]
        if rule.rationale:
            parts.append(self.frame(REASON_FRAMES, rule.rationale))
        parts += list(rule.examples[:1])
        return " ".join(parts)

    def document(self, focus: Rule, doc_type: str, related: list[Rule]) -> tuple[str, list[str]]:
        """One document about `focus`: opening, the rule and its reason, the value behind it
        (spec prose), one or two related rules, more prose, a closing."""
        topic = focus.section[-1] if focus.section else "its behaviour"
        title, opening = DOC_TYPES[doc_type]
        fill = {"name": self.name, "provider": self.provider, "providers": self.providers,
                "topic": topic, "topic_lc": lower_first(topic, self.name)}  # fmt: skip
        paragraphs = [title.format(**fill), opening.format(**fill), self.rule_paragraph(focus)]
        prose = self.rng.sample(self.prose, min(len(self.prose), self.rng.randint(2, 4)))
        if prose:
            frames = self.rng.sample(VALUE_FRAMES, 2)
            paragraphs.append(
                " ".join(self.frame((f,), p.text) for f, p in zip(frames, prose[:2], strict=False))
            )
        others = self.rng.sample(related, min(len(related), self.rng.randint(1, 2)))
        paragraphs += [self.rule_paragraph(r) for r in others]
        if len(prose) > 2:
            paragraphs.append(" ".join(p.text for p in prose[2:]))
        closing = self.rng.choice(CLOSINGS).format(name=self.name, provider=self.provider)
        if closing:
            paragraphs.append(closing)
        return "\n\n".join(paragraphs), [focus.id, *(r.id for r in others)]


class ComposedDocuments(SynthesisStep):
    """The `documents` dataset composed from the spec's own text (no LLM): conf/documents/."""

    consumes = ()
    # what the composer reads; the LLM source's settings it inherits in a stage file (prompts,
    # sampling, per_idea, ...) do not change its output, so they stay out of its key
    reads = ("target_tokens", "tokens_per_word", "doc_types", "min_words", "max_words",
             "min_distinct_ngrams", "leak_ngram", "max_documents")  # fmt: skip

    def key_settings(self) -> dict[str, Any]:
        return {k: self.settings.get(k) for k in self.reads}

    def needed_prompts(self) -> dict[str, set[str]]:
        return {}

    def fingerprint(self) -> dict[str, Any]:
        """The composer's phrases are part of what it writes: a change re-runs the step."""
        import hashlib

        return {"composer_sha256": hashlib.sha256(Path(__file__).read_bytes()).hexdigest()}

    def doc_types(self) -> list[str]:
        types = list(self.setting("doc_types") or DOC_TYPES)
        unknown = [t for t in types if t not in DOC_TYPES]
        if unknown:
            raise ConfigError(
                f"stage.steps.{self.name}.doc_types: unknown {unknown}; choose from "
                f"{list(DOC_TYPES)} (specalign/synth/composed_documents.py)."
            )
        return types

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        spec = self.ctx.spec
        rules = [r for r in spec.rules if r.text]
        if not rules:
            raise ConfigError(
                f"spec={spec.id}: composed documents need rules ({spec.path} has none). Fix: "
                "use the LLM document source, or give the spec `- [ID] rule` items."
            )
        prose = spec_prose(spec.text)
        n = self.setting("leak_ngram")
        if n:  # spec sentences that quote an eval item never enter a document
            grams = self.leakage(inputs).grams
            kept = [p for p in prose if not ngrams(p.text, int(n)) & grams]
            self.report.drop("eval_leak_sentence", len(prose) - len(kept))
            prose = kept
        target = int(self.setting("target_tokens", 10_000))
        per_word = float(self.setting("tokens_per_word", 1.3))
        rng = random.Random(f"{spec.hash}:{self.ctx.cfg.seed}")
        composer = Composer(spec, prose, rng)
        types = self.doc_types()
        rows: list[dict[str, Any]] = []
        words, attempts, limit = 0, 0, int(self.setting("max_documents") or 100_000)
        while words * per_word < target and len(rows) < limit:
            focus = rules[attempts % len(rules)]
            doc_type = types[(attempts // len(rules)) % len(types)]
            attempts += 1
            related = [r for r in rules if r.section == focus.section and r.id != focus.id]
            text, rule_ids = composer.document(focus, doc_type, related or rules)
            rows.append(
                {
                    "text": text,
                    "spec_id": spec.id,
                    "rule_ids": rule_ids,
                    "doc_type": doc_type,
                    "source": f"composed:{focus.id}:{attempts - 1}",
                    "domain": focus.section[0] if focus.section else "General",
                    "subdomain": focus.id,
                    "idea": f"{doc_type} on {focus.id}",
                    **self.provenance,
                    "generator": "composed",
                }
            )
            words += len(text.split())
        rows = document_gates(self, rows, inputs)  # the LLM source's gates
        metrics = self.publish(rows, out, "documents")
        kept_words = sum(len(r["text"].split()) for r in rows)
        return {
            **metrics,
            "words": kept_words,
            "estimated_tokens": round(kept_words * per_word),
            "spec_prose_sentences": len(prose),
        }
