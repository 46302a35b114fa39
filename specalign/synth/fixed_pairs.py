"""Preference pairs a spec declares outright, as the `pairs` dataset for DPO.

TRACE starts from existing preference data, so this loader is a real entry point, not a test
helper. Rows follow TRL's conversational preference form: `prompt` is the conversation so far
(ending with the user), `chosen` / `rejected` the assistant replies; plain strings are
accepted and wrapped as one user / assistant turn so hand-written files stay short.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from specalign.errors import SpecAlignError
from specalign.pipeline.dataset_io import read_jsonl, save_dataset
from specalign.pipeline.keys import file_sha256
from specalign.pipeline.step import Artifact, Step
from specalign.spec import resolve_spec_file

ROLES = {"system", "user", "assistant"}
KEY = "spec.preference_pairs"
REQUIRED = ("prompt", "chosen", "rejected")
SCALARS = (str, int, float, bool)


class FixedPreferencePairs(Step):
    produces = "dataset"
    uses = ()  # only the file's bytes matter, not the spec text: see fingerprint()

    def source(self) -> Path:
        name = self.ctx.spec.settings.get("preference_pairs")
        if not name:
            raise SpecAlignError(
                f"spec={self.ctx.spec.id}: this stage needs fixed preference pairs, but "
                f"conf/spec/{self.ctx.spec.id}.yaml has no `preference_pairs` key. Fix: add "
                "`preference_pairs: <file.jsonl>` (or +spec.preference_pairs=<file.jsonl>)."
            )
        return resolve_spec_file(name, key=KEY)

    def fingerprint(self) -> dict[str, Any]:
        return {"preference_pairs_sha256": file_sha256(self.source())}

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        from datasets import Dataset

        path = self.source()
        sha = file_sha256(path)
        rows = read_jsonl(path, required=REQUIRED, key=KEY)
        pairs = [
            to_pair(row, f"{path}:{line_number(path, i)}", sha, path.name)
            for i, row in enumerate(rows)
        ]
        limit = self.settings.get("max_rows")
        if limit is not None and int(limit) < len(pairs):
            pairs = [pairs[i] for i in fixed_sample(pairs, int(limit))]
        columns = list(dict.fromkeys(k for pair in pairs for k in pair))  # union, in order
        dataset = Dataset.from_list([{k: pair.get(k) for k in columns} for pair in pairs])
        save_dataset(dataset, out)
        return {"rows": len(dataset), "rows_in_file": len(rows)}


def fixed_sample(pairs: list[dict[str, Any]], limit: int) -> list[int]:
    """`max_rows` (a CPU size): the indices of a fixed sample of `limit` pairs, in file order,
    the same share of each `category` when the rows carry one (seed 0: every run and seed
    of a sweep trains on the same pairs)."""
    import random

    groups: dict[Any, list[int]] = {}
    for i, pair in enumerate(pairs):
        groups.setdefault(pair.get("category"), []).append(i)
    rng, keep = random.Random(0), []
    for n, members in enumerate(groups.values()):
        share = round(limit * len(members) / len(pairs)) if n < len(groups) - 1 else None
        share = limit - len(keep) if share is None else share
        keep += rng.sample(members, min(share, len(members)))
    return sorted(keep)


def line_number(path: Path, index: int) -> int:
    """The file line of the index-th non-blank row (read_jsonl skips blank lines)."""
    lines = [n for n, text in enumerate(path.read_text().splitlines(), start=1) if text.strip()]
    return lines[index]


def to_pair(row: dict[str, Any], where: str, sha: str, name: str) -> dict[str, Any]:
    """One checked row in TRL's conversational form, with provenance and extra scalars."""
    prompt = as_turns(row["prompt"], "user", where, "prompt")
    chosen = as_turns(row["chosen"], "assistant", where, "chosen")
    rejected = as_turns(row["rejected"], "assistant", where, "rejected")
    if prompt[-1]["role"] == "assistant":
        raise SpecAlignError(f"{where}: `prompt` must end with a user (or system) turn. Fix it.")
    for field, turns in (("chosen", chosen), ("rejected", rejected)):
        if [t["role"] for t in turns] != ["assistant"]:
            raise SpecAlignError(f"{where}: `{field}` must be one assistant turn. Fix it.")
    if chosen == rejected:
        raise SpecAlignError(f"{where}: `chosen` and `rejected` are identical. Fix or drop it.")
    extra = {
        k: v
        for k, v in row.items()
        if k not in (*REQUIRED, "rule_ids", "source") and isinstance(v, SCALARS)
    }
    return {
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "rule_ids": [str(r) for r in row.get("rule_ids", [])],
        "source": f"fixed:{name}@{sha[:12]}",
        **extra,
    }


def as_turns(value: Any, role: str, where: str, field: str) -> list[dict[str, str]]:
    """A list of {role, content}; a plain string becomes one turn of `role`."""
    if isinstance(value, str):
        value = [{"role": role, "content": value}]
    if not isinstance(value, list) or not value:
        raise SpecAlignError(
            f"{where}: `{field}` must be a string or a non-empty list of {{role, content}} "
            f"turns ({KEY}). Fix the row."
        )
    turns = []
    for turn in value:
        if not isinstance(turn, dict) or turn.get("role") not in ROLES:
            raise SpecAlignError(
                f"{where}: each `{field}` turn needs a role in {sorted(ROLES)}: {turn!r}. Fix it."
            )
        content = turn.get("content")
        if not isinstance(content, str) or not content.strip():
            raise SpecAlignError(f"{where}: a `{field}` {turn['role']} turn has no text. Fix it.")
        turns.append({"role": turn["role"], "content": content})
    return turns
