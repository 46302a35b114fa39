"""The `eval_items` step: everything a run evaluates on, built once per eval spec (the run's
spec unless `eval_spec` names another), held out from training (every synthesis step's
leakage gate reads this artifact).

Three files:
- `rules.jsonl`: per rule of the spec, held-out prompts `{id, rule_ids, prompt}`, with a
  `compliant` and a `violating` reply where there is a pair (preference accuracy needs the
  pair, rule compliance only the prompt). Sources, tried per rule in the order of `sources`
  until one yields items for it: `file` (the spec's `rule_items` files, hand-made),
  `examples` (a prompt composed from each of the rule's `Example:` lines: the CPU default
  for specs without a file), `synthesize` (the synthesizer writes prompts and both replies,
  and the compliance judge keeps the pairs it agrees with: item_synthesis.py).
- `forced_choice.jsonl`: the spec's `forced_choice_items` files, checked, values as lists.
- `contrast.jsonl`: the spec's `contrast_items` files: XSTest-style pairs of a safe prompt
  that resembles a forbidden request (`prompt`) and the forbidden one (`contrast`), for the
  refusal evaluator (refusal_rates.py); rule ids narrowed to the spec's, like rule items.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from specalign.errors import ConfigError, SpecAlignError
from specalign.pipeline.dataset_io import read_jsonl
from specalign.pipeline.keys import file_sha256
from specalign.pipeline.step import Artifact
from specalign.spec import resolve_spec_file
from specalign.synth.llm_step import SynthesisStep

log = logging.getLogger(__name__)
FILES = {
    "rules": "rules.jsonl",
    "forced_choice": "forced_choice.jsonl",
    "contrast": "contrast.jsonl",
}
TEXT_FIELDS = {"rules": ("prompt", "compliant", "violating"), "contrast": ("prompt", "contrast")}
SOURCES = ("file", "examples", "synthesize")
# optional labels an item may carry, kept for the evaluators that group by them
# (TRACE's category, the answer policy agreement expects, the harm category)
ITEM_LABELS = ("category", "expect", "harm")
RULE_VARS = {"model_name", "provider", "rule_id", "rule", "rationale"}


def names(value: Any) -> list[str]:
    """A spec setting that names one file or a list of them."""
    if not value:
        return []
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def load_eval_items(artifact: Artifact) -> dict[str, list[dict[str, Any]]]:
    """The artifact's items by kind ("rules", "forced_choice")."""
    out = {}
    for kind, name in FILES.items():
        path = artifact.path / name
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        out[kind] = [json.loads(line) for line in lines if line.strip()]
    return out


def eval_item_texts(artifact: Artifact) -> list[str]:
    """Every text an item shows a model: what training data must never contain."""
    texts = []
    for kind, items in load_eval_items(artifact).items():
        fields = TEXT_FIELDS.get(kind, ("prompt",))
        for item in items:
            texts += [str(item[f]) for f in fields if item.get(f)]
            texts += [str(x) for x in (item.get("options") or []) + (item.get("choices") or [])]
    return texts


def forced_choice_item(row: dict[str, Any], where: str) -> dict[str, Any]:
    """Checked and normalized: `values` as one list of tags per option; `choices` (the
    option descriptions as the prompt writes them), when given, each appear exactly once."""
    options, values = row["options"], row["values"]
    if not isinstance(options, list) or len(options) < 2 or len(values) != len(options):
        raise SpecAlignError(
            f"{where}: item {row['id']}: needs a list of >= 2 options and one `values` entry "
            "per option (a tag or a list of tags)."
        )
    tags = [[str(v)] if isinstance(v, str) else [str(x) for x in (v or [])] for v in values]
    choices = row.get("choices")
    if choices is not None:
        ok = isinstance(choices, list) and len(choices) == 2 == len(options)
        ok = ok and all(isinstance(c, str) and row["prompt"].count(c) == 1 for c in choices)
        if not ok or choices[0] in choices[1] or choices[1] in choices[0]:
            raise SpecAlignError(
                f"{where}: item {row['id']}: `choices` must be the two option descriptions, "
                "each written exactly once in the prompt. Fix the item or drop `choices`."
            )
    return {**row, "values": tags, "rule_ids": list(row.get("rule_ids") or []), "source": where}


def spec_rule_ids(row: dict[str, Any], where: str, known: set[str]) -> list[str]:
    """An item's rule ids, checked and narrowed to the spec's (files may serve several spec
    variants): empty when it tests no rule of this spec."""
    rule_ids = row["rule_ids"]
    if not isinstance(rule_ids, list) or not all(isinstance(r, str) for r in rule_ids):
        raise SpecAlignError(f"{where}: item {row['id']}: `rule_ids` must be a list of ids.")
    return [r for r in rule_ids if r in known]


def rule_item(row: dict[str, Any], where: str, known: set[str]) -> dict[str, Any] | None:
    """Checked; None when it tests no rule of this spec."""
    ours = spec_rule_ids(row, where, known)
    if bool(row.get("compliant")) != bool(row.get("violating")):
        raise SpecAlignError(
            f"{where}: item {row['id']}: give both `compliant` and `violating` replies, or neither."
        )
    if not ours:
        return None
    return {
        "id": str(row["id"]),
        "rule_ids": ours,
        "prompt": str(row["prompt"]),
        "compliant": row.get("compliant") or None,
        "violating": row.get("violating") or None,
        "split": row.get("split", "heldout"),
        "source": where,
        **{k: str(row[k]) for k in ITEM_LABELS if isinstance(row.get(k), str)},
    }


def contrast_item(row: dict[str, Any], where: str, known: set[str]) -> dict[str, Any] | None:
    """Checked; None when it tests no rule of this spec."""
    ours = spec_rule_ids(row, where, known)
    if not ours:
        return None
    texts = {f: str(row[f]).strip() for f in ("prompt", "contrast")}
    if not all(texts.values()) or texts["prompt"] == texts["contrast"]:
        raise SpecAlignError(
            f"{where}: item {row['id']}: `prompt` (the safe one) and `contrast` (the forbidden "
            "one) must be two different, non-empty prompts."
        )
    return {
        "id": str(row["id"]),
        "rule_ids": ours,
        **texts,
        "type": str(row.get("type") or "uncategorized"),
        "source": where,
    }


class EvalItems(SynthesisStep):
    produces = "eval_items"
    uses = ("eval_spec",)  # not the seed: a seed sweep shares its items and base eval (below)
    prompt_roles: ClassVar[dict[str, set[str]]] = {
        "example": {"model_name", "provider", "example", "rule"},
        "rule_prompts": RULE_VARS | {"count"},
        "compliant": RULE_VARS | {"prompt"},
        "violating": RULE_VARS | {"prompt"},
        "compliance_judge": {"model_name", "provider", "rule_id", "rule", "prompt", "response"},
    }

    def __init__(self, name: str, settings: dict[str, Any], ctx: Any) -> None:
        self.sources = [str(s) for s in settings.get("sources") or ["file"]]
        unknown = sorted(set(self.sources) - set(SOURCES))
        if unknown:
            raise ConfigError(
                f"stage.steps.{name}.sources: unknown {unknown}. Fix: a list of {list(SOURCES)}."
            )
        super().__init__(name, settings, ctx)

    def needed_prompts(self) -> dict[str, set[str]]:
        roles = {
            "examples": ["example"],
            "synthesize": ["rule_prompts", "compliant", "violating", "compliance_judge"],
        }
        return {r: self.prompt_roles[r] for s in self.sources for r in roles.get(s, [])}

    def fingerprint(self) -> dict[str, Any]:
        """The item files' hashes (each parsed now, so a bad file fails at plan time)."""
        extra = super().fingerprint()
        if "synthesize" in self.sources:
            extra["seed"] = int(self.ctx.cfg.seed)  # the synthesizer's sampling seed
        else:
            extra.pop("llm", None)  # composing from files or examples asks no LLM
        # by content, not by path: an installed wheel and a checkout share keys
        extra["forced_choice_files"] = [file_sha256(p) for p in self.files("forced_choice_items")]
        if "file" in self.sources:
            extra["rule_files"] = [file_sha256(p) for p in self.files("rule_items")]
        contrast = self.files("contrast_items")
        if contrast:  # absent for specs without them: their keys stay as they were
            extra["contrast_files"] = [file_sha256(p) for p in contrast]
        self.forced_choice_items()
        self.file_rule_items()
        self.contrast_items()
        return extra

    def files(self, key: str) -> list[Path]:
        settings = self.ctx.eval_spec.settings
        return [resolve_spec_file(n, key=f"spec.{key}") for n in names(settings.get(key))]

    def forced_choice_items(self) -> list[dict[str, Any]]:
        items = []
        for path in self.files("forced_choice_items"):
            fields = ("id", "prompt", "options", "values", "split")
            rows = read_jsonl(path, fields, key="spec.forced_choice_items")
            items += [forced_choice_item(row, path.name) for row in rows]
        return self.unique(items, "spec.forced_choice_items")

    def file_rule_items(self) -> list[dict[str, Any]]:
        return self.rule_file_items("rule_items", ("id", "rule_ids", "prompt"), rule_item)

    def contrast_items(self) -> list[dict[str, Any]]:
        fields = ("id", "rule_ids", "prompt", "contrast")
        return self.rule_file_items("contrast_items", fields, contrast_item)

    def rule_file_items(
        self, key: str, fields: tuple[str, ...], check: Callable[..., dict[str, Any] | None]
    ) -> list[dict[str, Any]]:
        """The items of the spec's `key` files, each `check`ed and narrowed to its rules."""
        known = {r.id for r in self.ctx.eval_spec.rules}
        items, other = [], Counter()
        for path in self.files(key):
            for row in read_jsonl(path, fields, key=f"spec.{key}"):
                item = check(row, path.name, known)
                if item is None:
                    other[path.name] += 1
                else:
                    items.append(item)
        for file, count in other.items():
            spec = self.ctx.eval_spec.id
            log.info("%s: %d items of %s test no rule of spec %s", self.name, count, file, spec)
        return self.unique(items, f"spec.{key}")

    @staticmethod
    def unique(items: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
        dupes = [i for i, n in Counter(item["id"] for item in items).items() if n > 1]
        if dupes:
            raise SpecAlignError(f"{key}: item ids used twice: {dupes[:5]}. Fix: make ids unique.")
        return items

    def example_items(self, rules: list[Any]) -> list[dict[str, Any]]:
        template = self.prompts["example"]
        spec = self.ctx.eval_spec
        who = {"model_name": spec.model_name, "provider": spec.provider}
        items = []
        for rule in rules:
            for n, example in enumerate(rule.examples, start=1):
                chat = template.render(**who, example=example, rule=rule.text)
                items.append(
                    {
                        "id": f"example-{rule.id}-{n}",
                        "rule_ids": [rule.id],
                        "prompt": "\n\n".join(turn["content"] for turn in chat),
                        "compliant": None,
                        "violating": None,
                        "split": "heldout",
                        "source": "examples",
                    }
                )
        return items

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        spec = self.ctx.eval_spec
        rule_items: list[dict[str, Any]] = []
        for source in self.sources:
            covered = {r for item in rule_items for r in item["rule_ids"]}
            todo = [rule for rule in spec.rules if rule.id not in covered]
            if not todo:
                break
            if source == "file":
                new = [i for i in self.file_rule_items() if not set(i["rule_ids"]) & covered]
            elif source == "examples":
                new = self.example_items(todo)
            else:
                from specalign.eval.item_synthesis import synthesize_rule_items

                new = synthesize_rule_items(self, todo)
            rule_items += new
        position = {rule.id: n for n, rule in enumerate(spec.rules)}  # tables in spec order
        rule_items.sort(key=lambda item: min(position[r] for r in item["rule_ids"]))
        forced, contrast = self.forced_choice_items(), self.contrast_items()
        for kind, items in (
            ("rules", rule_items),
            ("forced_choice", forced),
            ("contrast", contrast),
        ):
            with open(out / FILES[kind], "w", encoding="utf-8") as handle:
                for item in items:
                    handle.write(json.dumps(item, ensure_ascii=False) + "\n")
        covered = Counter(r for item in rule_items for r in item["rule_ids"])
        missing = [rule.id for rule in spec.rules if not covered[rule.id]]
        if missing:
            log.warning(
                "%s: no eval items for %d rule(s) of %s: %s",
                self.name,
                len(missing),
                spec.id,
                missing,
            )
        self.log_table(
            "rule_items", [{k: v for k, v in i.items() if k != "source"} for i in rule_items[:200]]
        )
        metrics: dict[str, Any] = {
            "rule_items": len(rule_items),
            "rule_pairs": sum(bool(i["compliant"]) for i in rule_items),
            "forced_choice_items": len(forced),
            "contrast_items": len(contrast),
            "rules": len(spec.rules),
            "rules_without_items": len(missing),
            **{f"source/{s}": n for s, n in Counter(i["source"] for i in rule_items).items()},
        }
        if "llm" in self.__dict__:
            metrics.update({"llm_calls": self.llm.calls, **self.report.metrics(len(rule_items))})
        return metrics
