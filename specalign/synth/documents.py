"""The bottom of MSM's document hierarchy (RESEARCH.md s.2): document types -> document
ideas -> documents, one cached step each, grouped by subdomain (in rules mode: by rule).

The documents describe the model by the spec's model and provider names and, above all, the
reasons behind its behaviour. Gates before the `documents` dataset is saved: length bounds,
degenerate repetition, exact duplicates and leakage of eval items.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, ClassVar

from specalign.errors import ConfigError
from specalign.llm import schemas
from specalign.pipeline.dataset_io import load_dataset
from specalign.pipeline.step import Artifact
from specalign.synth.gates import exact_duplicates, length_bounds, repetition
from specalign.synth.llm_step import SynthesisStep
from specalign.synth.replies import parse_list, parse_text

GROUP_VARS = {"spec", "model_name", "provider", "domain", "subdomain", "context", "excerpt",
              "assertions", "explanation"}  # fmt: skip


def group_by_subdomain(assertions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per subdomain, its assertions gathered (bulleted text, ids, rule ids)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in assertions:
        groups[row["subdomain_id"]].append(row)
    out = []
    for rows in groups.values():
        first = rows[0]
        out.append(
            {
                **{
                    k: first[k]
                    for k in ("domain", "subdomain_id", "subdomain", "context", "excerpt")
                },
                "assertions": "\n".join(f"- {r['assertion']}" for r in rows),
                "explanation": " ".join(r["explanation"] for r in rows if r["explanation"]),
                "assertion_ids": [r["assertion_id"] for r in rows],
                "rule_ids": sorted({i for r in rows for i in r["rule_ids"]}),
            }
        )
    return out


class DocumentStep(SynthesisStep):
    consumes = ("dataset",)

    def group_vars(self, row: dict[str, Any]) -> dict[str, Any]:
        spec = self.ctx.spec
        return {
            "spec": spec.text,
            "model_name": spec.model_name,
            "provider": spec.provider,
            **{k: row[k] for k in GROUP_VARS if k in row},
        }


class DocumentTypes(DocumentStep):
    """Formats per subdomain: from the LLM (`source: llm`) or a fixed list (`source: fixed`)."""

    prompt_roles: ClassVar[dict[str, set[str]]] = {"doc_types": GROUP_VARS | {"count"}}

    def needed_prompts(self) -> dict[str, set[str]]:
        source = self.setting("source", "llm")
        if source not in ("llm", "fixed"):
            raise ConfigError(f"stage.steps.{self.name}.source={source!r}: choose llm or fixed.")
        return self.prompt_roles if source == "llm" else {}

    def reply_schemas(self) -> dict[str, Any]:
        kind = schemas.text(int(self.setting("max_words", 4)))
        items = schemas.items(kind, int(self.setting("count", 2)))
        return {**super().reply_schemas(), "doc_types": items}

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        groups = group_by_subdomain(list(load_dataset(inputs["dataset"])))
        count = int(self.setting("count", 2))
        if self.setting("source", "llm") == "fixed":
            types = [list(self.setting("fixed"))[:count] for _ in groups]
        else:
            chats = [
                self.prompts["doc_types"].render(**self.group_vars(g), count=count) for g in groups
            ]
            types = self.ask(
                "doc_types",
                chats,
                lambda t: parse_list(
                    t, max_items=count, max_words=int(self.setting("max_words", 4))
                ),
                schema=self.reply_schemas()["doc_types"],
            )
        rows = [
            {**group, "doc_type": doc_type, **self.provenance}
            for group, kinds in zip(groups, types, strict=True)
            for doc_type in kinds or []
        ]
        return self.publish(rows, out, "doc_types")


class DocumentIdeas(DocumentStep):
    """`per_type` one-sentence ideas for each (subdomain, document type)."""

    prompt_roles: ClassVar[dict[str, set[str]]] = {"ideas": GROUP_VARS | {"doc_type", "count"}}

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        parents = list(load_dataset(inputs["dataset"]))
        count = int(self.setting("per_type", 2))
        chats = [
            self.prompts["ideas"].render(**self.group_vars(p), doc_type=p["doc_type"], count=count)
            for p in parents
        ]
        bounds = {
            "min_words": int(self.setting("min_words", 4)),
            "max_words": int(self.setting("max_words", 60)),
        }
        ideas = self.ask("ideas", chats, lambda t: parse_list(t, max_items=count, **bounds))
        rows = [
            {**parent, "idea_id": f"{parent['subdomain_id']}-t{i:02d}-i{j:02d}", "idea": idea}
            for i, (parent, found) in enumerate(zip(parents, ideas, strict=True))
            for j, idea in enumerate(found or [])
        ]
        return self.publish(rows, out, "ideas")


class DocumentSynthesis(DocumentStep):
    """One document per idea (`per_idea` for more, each with its own sampling seed)."""

    prompt_roles: ClassVar[dict[str, set[str]]] = {"document": GROUP_VARS | {"doc_type", "idea"}}

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        ideas = list(load_dataset(inputs["dataset"]))
        limit = self.setting("max_documents")
        per_idea = int(self.setting("per_idea", 1))
        if limit is not None:  # generate no more than can be kept
            ideas = ideas[: -(-int(limit) // per_idea)]
        chats = [
            self.prompts["document"].render(
                **self.group_vars(i), doc_type=i["doc_type"], idea=i["idea"]
            )
            for i in ideas
        ]
        rows: list[dict[str, Any]] = []
        for k in range(per_idea):  # a different seed per copy: same prompt, new document
            texts = self.ask(
                "document",
                chats,
                lambda t: parse_text(t, min_words=int(self.setting("min_words", 40))),
                sampling=self.sampling(seed=int(self.ctx.cfg.seed) + k),
            )
            rows += [
                document_row(idea, text, k, self.provenance)
                for idea, text in zip(ideas, texts, strict=True)
                if text
            ]
        if limit is not None:
            rows = rows[: int(limit)]
        rows = document_gates(self, rows, inputs)
        metrics = self.publish(rows, out, "documents")
        return {**metrics, "words": sum(len(r["text"].split()) for r in rows)}


def document_gates(
    step: SynthesisStep, rows: list[dict[str, Any]], inputs: dict[str, Artifact]
) -> list[dict[str, Any]]:
    """What every `documents` dataset passes, whoever wrote it: length bounds (`min_words`,
    `max_words`), degenerate repetition (`min_distinct_ngrams`), exact duplicates and, with
    `leak_ngram` set, leakage of the eval items; drops are counted in the step's report."""
    rows = length_bounds(
        step.report, rows, "text", int(step.setting("min_words", 40)), step.setting("max_words")
    )
    rows = repetition(step.report, rows, "text", float(step.setting("min_distinct_ngrams", 0.5)))
    rows = exact_duplicates(step.report, rows, "text")
    if step.setting("leak_ngram"):
        rows = step.leakage(inputs).gate(step.report, rows, ["text"])
    return rows


def document_row(
    idea: dict[str, Any], text: str, copy: int, provenance: dict[str, Any]
) -> dict[str, Any]:
    """The `documents` schema (as FixedDocuments writes it) plus where the document came from."""
    return {
        "text": text,
        "spec_id": provenance["spec_id"],
        "rule_ids": list(idea["rule_ids"]),
        "doc_type": idea["doc_type"],
        "source": f"msm:{idea['idea_id']}:{copy}",
        "domain": idea["domain"],
        "subdomain": idea["subdomain"],
        "idea": idea["idea"],
        **provenance,
    }
