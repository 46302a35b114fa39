"""MSM's alignment fine-tuning (AFT) data: demonstrations synthesized from assertions.

Assertions come from the MSM hierarchy (an `assertions` dataset input) or, without an input,
from the spec's rules (`rule_assertions`). For each assertion and question type the LLM
writes questions; questions pass word bounds, exact and embedding near-duplicate removal
(MSM: cosine 0.91) and the eval leakage check. The LLM then answers each question as the
spec's model, in the `value` style (explains the value behind the behaviour) or the `rule`
style (cites the rule), optionally reasoning first ("Reasoning: ... Answer: ..."). An LLM
filter keeps answers it judges consistent with the assertion (P(Yes) >= filter_threshold).

Rows are saved with and without reasoning: `messages` (what SFT trains on) holds the
reasoning when `reasoning: true`, `messages_without_reasoning` always the plain answer.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

from specalign.errors import ConfigError, SpecAlignError
from specalign.pipeline.step import Artifact
from specalign.synth.embed import embedding_dedup
from specalign.synth.gates import exact_duplicates, length_bounds
from specalign.synth.llm_step import SynthesisStep
from specalign.synth.replies import parse_list, parse_text, words

STYLES = ("value", "rule")
ASSERTION_FIELDS = ("assertion_id", "assertion", "explanation", "rule_ids")
# The assistant turn when reasoning is kept: the think-tag convention of reasoning chat models.
REASONING_TURN = "<think>\n{reasoning}\n</think>\n\n{answer}"
MARK = r"[*_#\s]*"  # markdown around a label: **Answer:**, ## Reasoning
REASONED = re.compile(
    rf"^{MARK}reasoning{MARK}:{MARK}(?P<reasoning>.+?)\s*\n{MARK}answer{MARK}:{MARK}(?P<answer>.+)$",
    flags=re.DOTALL | re.IGNORECASE,
)
ANSWER_LABEL = re.compile(rf"^{MARK}answer{MARK}:{MARK}", flags=re.IGNORECASE)
COMMON = {"model_name", "provider", "spec", "assertion", "explanation", "rules"}


def rule_assertions(spec: Any) -> list[dict[str, Any]]:
    """The spec's rules as assertions: one per rule, explained by the rule's rationale."""
    return [
        {
            "assertion_id": rule.id,
            "assertion": rule.text,
            "explanation": rule.rationale,
            "rule_ids": [rule.id],
        }
        for rule in spec.rules
    ]


def parse_reasoned(text: str, min_words: int, max_words: int | None) -> tuple[str, str]:
    """(reasoning, answer) from 'Reasoning: ... Answer: ...'; ValueError names the format."""
    match = REASONED.match(text.strip())
    if not match:
        raise ValueError(
            "the reply must have two parts: a line starting 'Reasoning:' and then a line "
            "starting 'Answer:'"
        )
    reasoning = match.group("reasoning").strip()
    answer = parse_text(match.group("answer"), min_words=min_words, max_words=max_words)
    if ANSWER_LABEL.match(answer) or not words(reasoning):
        raise ValueError("write the reasoning once, then the answer once")
    return reasoning, answer


class DemonstrationSynthesis(SynthesisStep):
    """Questions -> gates -> answers (value | rule style, optional reasoning) -> LLM filter."""

    optional = ("dataset", "eval_items")
    version = 1
    prompt_roles: ClassVar[dict[str, set[str]]] = {
        "questions": COMMON | {"question_type", "type_description", "count"},
        **{
            f"answer_{style}{suffix}": COMMON | {"question"}
            for style in STYLES
            for suffix in ("", "_reasoning")
        },
        "filter": COMMON | {"question", "answer"},
    }

    def __init__(self, name: str, settings: dict[str, Any], ctx: Any) -> None:
        style = settings.get("style", "value")
        if style not in STYLES:
            raise ConfigError(f"stage.steps.{name}.style={style!r}: choose one of {STYLES}.")
        if not settings.get("question_types"):
            raise ConfigError(
                f"stage.steps.{name}.question_types is empty: give a mapping "
                "type -> description, e.g. {direct: 'asks about the behaviour directly'}."
            )
        super().__init__(name, settings, ctx)

    @property
    def answer_role(self) -> str:
        suffix = "_reasoning" if self.setting("reasoning", False) else ""
        return f"answer_{self.setting('style', 'value')}{suffix}"

    def needed_prompts(self) -> dict[str, set[str]]:
        roles = ("questions", self.answer_role, "filter")
        return {role: self.prompt_roles[role] for role in roles}

    def estimate(self) -> dict[str, Any] | None:
        """Calls from the spec's rules (an assertions input's size is unknown before it runs)."""
        step_cfg = self.ctx.section(f"stage.steps.{self.name}") or {}
        if (step_cfg.get("inputs") or {}).get("dataset"):
            return None
        asked = len(self.ctx.spec.rules) * len(self.setting("question_types"))
        most = asked * int(self.setting("questions_per_type", 1))
        return {"llm_calls": asked, "max_answer_calls": most, "max_filter_scores": 2 * most}

    # ---- inputs -------------------------------------------------------------------------
    def assertions(self, inputs: dict[str, Artifact]) -> list[dict[str, Any]]:
        if "dataset" not in inputs:
            return rule_assertions(self.ctx.spec)
        from specalign.pipeline.dataset_io import load_dataset

        dataset = load_dataset(inputs["dataset"])
        missing = [f for f in ASSERTION_FIELDS if f not in dataset.column_names]
        if missing:
            raise SpecAlignError(
                f"step {self.name}: its input {inputs['dataset'].step} has no column(s) "
                f"{missing}; it needs an assertions dataset with {list(ASSERTION_FIELDS)}."
            )
        return [
            {
                "assertion_id": str(row["assertion_id"]),
                "assertion": str(row["assertion"]),
                "explanation": str(row["explanation"] or ""),
                "rule_ids": [str(r) for r in row["rule_ids"] or []],
            }
            for row in dataset
        ]

    def variables(self, row: dict[str, Any], **extra: Any) -> dict[str, Any]:
        spec = self.ctx.spec
        known = {rule.id: rule for rule in spec.rules}
        rules = [f"[{r}] {known[r].text}" for r in row["rule_ids"] if r in known]
        return {
            "model_name": spec.model_name,
            "provider": spec.provider or "its developers",
            "spec": spec.text,
            "assertion": row["assertion"],
            "explanation": row["explanation"] or "(none given)",
            "rules": "\n".join(rules) or row["assertion"],
            **extra,
        }

    # ---- levels -------------------------------------------------------------------------
    def questions(
        self, assertions: list[dict[str, Any]], inputs: dict[str, Artifact]
    ) -> list[dict[str, Any]]:
        count = int(self.setting("questions_per_type", 1))
        lo, hi = int(self.setting("min_question_words", 3)), self.setting("max_question_words")
        types = dict(self.setting("question_types"))
        requests = [
            (a, qtype, self.variables(a, question_type=qtype, type_description=desc, count=count))
            for a in assertions
            for qtype, desc in types.items()
        ]
        replies = self.ask(
            "questions",
            [self.prompts["questions"].render(**v) for _, _, v in requests],
            lambda text: parse_list(
                text, max_items=count, min_words=lo, max_words=int(hi or 10**6)
            ),
        )
        self.counts["question_requests"] = len(requests)
        rows = [
            {**a, "question_type": qtype, "question": q}
            for (a, qtype, _), items in zip(requests, replies, strict=True)
            for q in items or []
        ]
        self.counts["questions_generated"] = len(rows)
        rows = length_bounds(self.report, rows, "question", lo, hi and int(hi))
        rows = exact_duplicates(self.report, rows, "question")
        rows = embedding_dedup(self.report, rows, "question", self.setting("dedup_threshold"))
        if self.setting("leak_ngram"):
            rows = self.leakage(inputs).gate(self.report, rows, ["question"])
        self.counts["questions_kept"] = len(rows)
        self.require(rows, "questions")
        return rows

    def answers(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        lo, hi = int(self.setting("min_answer_words", 3)), self.setting("max_answer_words")
        hi = hi and int(hi)
        if self.setting("reasoning", False):

            def parse(text: str) -> tuple[str, str]:
                return parse_reasoned(text, lo, hi)

            fix = "Reply again as 'Reasoning: <your reasoning>' then 'Answer: <your answer>'."
        else:

            def parse(text: str) -> tuple[str, str]:
                return "", ANSWER_LABEL.sub("", parse_text(text, min_words=lo, max_words=hi))

            fix = "Reply again with only your answer to the user."
        prompt = self.prompts[self.answer_role]
        chats = [prompt.render(**self.variables(row, question=row["question"])) for row in rows]
        replies = self.ask("answer", chats, parse, fix=fix)
        out = [
            {**row, "reasoning": reply[0], "answer": reply[1]}
            for row, reply in zip(rows, replies, strict=True)
            if reply is not None
        ]
        self.counts["answers_generated"] = len(out)
        self.require(out, "answers")
        return out

    def filtered(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.judge = self.new_judge()
        chats = [
            self.prompts["filter"].render(
                **self.variables(row, question=row["question"], answer=row["answer"])
            )
            for row in rows
        ]
        threshold = float(self.setting("filter_threshold", 0.5))
        kept = []
        for row, p in zip(rows, self.judge.yes_probability(chats), strict=True):
            if p is None:
                self.report.drop("filter_reject")
            elif p < threshold:
                self.report.drop("off_spec")
            else:
                kept.append({**row, "filter_score": float(p)})
        self.require(kept, "demonstrations (the filter judged every answer off-spec)")
        return kept

    def record(self, row: dict[str, Any]) -> dict[str, Any]:
        question, answer, reasoning = row["question"], row["answer"], row["reasoning"]
        user = {"role": "user", "content": question}
        plain = [user, {"role": "assistant", "content": answer}]
        full = REASONING_TURN.format(reasoning=reasoning, answer=answer) if reasoning else answer
        return {
            "messages": [user, {"role": "assistant", "content": full}],
            "messages_without_reasoning": plain,
            "question": question,
            "answer": answer,
            "reasoning": reasoning,
            "question_type": row["question_type"],
            "style": str(self.setting("style", "value")),
            "assertion_id": row["assertion_id"],
            "assertion": row["assertion"],
            "rule_ids": list(row["rule_ids"]),
            "filter_score": row["filter_score"],
            **self.provenance,
        }

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        self.counts: dict[str, int] = {}
        assertions = self.assertions(inputs)
        self.require(assertions, "assertions (the input is empty)")
        self.counts["assertions"] = len(assertions)
        rows = self.filtered(self.answers(self.questions(assertions, inputs)))
        metrics = self.publish([self.record(row) for row in rows], out, "demonstrations")
        return {**metrics, **self.counts, **self.judge.metrics("filter")}
