"""The demonstrations a spec declares outright (e.g. MSM's cheese preferences), as the
`demonstrations` dataset: `{messages}` plus provenance. No model is involved, which is the
point of the MSM comparison: both cheese specs fine-tune on byte-identical data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from specalign.errors import SpecAlignError
from specalign.pipeline.dataset_io import read_jsonl, save_dataset
from specalign.pipeline.keys import file_sha256
from specalign.pipeline.step import Artifact, Step
from specalign.spec import resolve_spec_file

ROLES = {"system", "user", "assistant"}


class FixedDemonstrations(Step):
    produces = "dataset"
    uses = ()  # only the file's bytes matter, not the spec text: see fingerprint()

    def source(self) -> Path:
        name = self.ctx.spec.settings.get("demonstrations")
        if not name:
            raise SpecAlignError(
                f"spec={self.ctx.spec.id}: this stage needs fixed demonstrations, but "
                f"conf/spec/{self.ctx.spec.id}.yaml has no `demonstrations` key. Fix: add "
                "`demonstrations: <file.jsonl>` or pick a stage that synthesizes them."
            )
        return resolve_spec_file(name, key="spec.demonstrations")

    def fingerprint(self) -> dict[str, Any]:
        return {"demonstrations_sha256": file_sha256(self.source())}

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        from datasets import Dataset

        path = self.source()
        rows = read_jsonl(path, required=("messages",), key="spec.demonstrations")
        for number, row in enumerate(rows, start=1):
            check_messages(row["messages"], f"{path} row {number}")
        sha = file_sha256(path)
        dataset = Dataset.from_list(
            [
                {
                    "messages": row["messages"],
                    "rule_ids": [str(r) for r in row.get("rule_ids", [])],
                    "source": f"fixed:{path.name}@{sha[:12]}",
                    "generator": "fixed",
                }
                for row in rows
            ]
        )
        save_dataset(dataset, out)
        return {"rows": len(dataset)}


def check_messages(messages: Any, where: str) -> None:
    """A conversation: a non-empty list of {role, content}, ending with the assistant."""
    if not isinstance(messages, list) or not messages:
        raise SpecAlignError(f"{where}: `messages` must be a non-empty list of turns.")
    for turn in messages:
        if not isinstance(turn, dict) or turn.get("role") not in ROLES:
            raise SpecAlignError(f"{where}: each turn needs a role in {sorted(ROLES)}: {turn!r}")
        if not isinstance(turn.get("content"), str) or not turn["content"].strip():
            raise SpecAlignError(f"{where}: a {turn['role']} turn has no text.")
    if messages[-1]["role"] != "assistant":
        raise SpecAlignError(f"{where}: the last turn must be the assistant's (the target).")
