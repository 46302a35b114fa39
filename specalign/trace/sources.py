"""Existing preference data from a `datasets` source: a directory written by
`Dataset.save_to_disk`, a local data file (JSONL / JSON / Parquet / CSV), or a hub dataset
id (cluster users; offline the error says to give a local path). `schema` maps its columns:

- `preference`: `prompt`, `chosen`, `rejected` (strings or conversational turns), as ours;
- `pku_saferlhf`: PKU-SafeRLHF (`prompt`, `response_0/1`, `is_response_0/1_safe`), mapped as
  the TRACE authors do: of a pair with one safe and one unsafe response, the safe one is
  chosen; pairs where both or neither are safe carry no safety preference and are skipped.
  Its licence (CC BY-NC 4.0) forbids shipping it: it is only ever read from where you have it.

Every row is then checked like a hand-written pairs file (fixed_pairs.to_pair).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from specalign.errors import ConfigError, SpecAlignError
from specalign.pipeline.dataset_io import save_dataset
from specalign.pipeline.step import Artifact, Step
from specalign.synth.fixed_pairs import to_pair

SCHEMAS = ("preference", "pku_saferlhf")
DATA_FILES = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
PKU_COLUMNS = ("prompt", "response_0", "response_1", "is_response_0_safe", "is_response_1_safe")


def local_files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def load_source(
    source: str, split: str, revision: str | None, key: str = "stage.steps.pairs.source"
) -> Any:
    """The dataset's rows as a `datasets.Dataset`, from disk or the hub; `key` is the config
    key that named it, for the errors."""
    import datasets

    path = Path(source).expanduser()
    if path.is_dir() and (path / "dataset_info.json").is_file():
        loaded = datasets.load_from_disk(str(path))
        return loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
    if path.is_file():
        kind = DATA_FILES.get(path.suffix.lower())
        if kind is None:
            raise ConfigError(
                f"{key}={source}: unknown file type {path.suffix!r}. Fix: "
                f"one of {sorted(DATA_FILES)} or a save_to_disk directory."
            )
        return datasets.load_dataset(kind, data_files=str(path), split="train")
    if path.is_dir():  # a directory of data files (e.g. a downloaded hub snapshot)
        return datasets.load_dataset(str(path), split=split)
    try:
        return datasets.load_dataset(source, split=split, revision=revision)
    except Exception as err:  # offline, unknown id, gated: one line with the fix
        raise SpecAlignError(
            f"{key}={source}: cannot load it from the hub "
            f"({type(err).__name__}: {str(err).splitlines()[0][:160]}). Fix: download it where "
            "you have network and give the local path (a directory or a data file)."
        ) from err


def pku_pairs(rows: list[dict[str, Any]], where: str) -> tuple[list[dict[str, Any]], int]:
    """(pairs, skipped) from PKU-SafeRLHF rows: the safe response chosen over the unsafe."""
    missing = [c for c in PKU_COLUMNS if rows and c not in rows[0]]
    if missing:
        raise SpecAlignError(
            f"{where}: schema=pku_saferlhf needs columns {list(PKU_COLUMNS)}; missing {missing}."
        )
    pairs, skipped = [], 0
    for i, row in enumerate(rows):
        safe0, safe1 = bool(row["is_response_0_safe"]), bool(row["is_response_1_safe"])
        if safe0 == safe1:
            skipped += 1
            continue
        good, bad = ("response_0", "response_1") if safe0 else ("response_1", "response_0")
        pairs.append(
            {"id": f"pku-{i}", "prompt": row["prompt"], "chosen": row[good], "rejected": row[bad]}
        )
    return pairs, skipped


class PreferenceSource(Step):
    produces = "dataset"
    uses = ()  # the data's identity is in the fingerprint

    def fingerprint(self) -> dict[str, Any]:
        source = str(self.settings.get("source") or "")
        path = Path(source).expanduser()
        if path.exists():
            digest = hashlib.sha256()
            for file in local_files(path):
                digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
                digest.update(file.read_bytes())
            return {"data_sha256": digest.hexdigest()}
        return {"hub": source, "revision": self.settings.get("revision")}

    def key_settings(self) -> dict[str, Any]:
        return {k: v for k, v in self.settings.items() if k != "source"}

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        from datasets import Dataset

        source = self.settings.get("source")
        schema = str(self.settings.get("schema", "preference"))
        if not source:
            raise ConfigError("stage.steps.pairs.source is not set. Fix: a path or a hub id.")
        if schema not in SCHEMAS:
            raise ConfigError(f"stage.steps.pairs.schema={schema!r}: choose one of {SCHEMAS}.")
        split = str(self.settings.get("split", "train"))
        data = load_source(str(source), split, self.settings.get("revision"))
        limit = self.settings.get("max_rows")
        if limit is not None:
            data = data.select(range(min(int(limit), len(data))))
        rows, skipped = data.to_list(), 0
        if schema == "pku_saferlhf":
            rows, skipped = pku_pairs(rows, str(source))
        tag = hashlib.sha256(str(source).encode()).hexdigest()
        pairs = [
            to_pair(row, f"{source} row {i}", tag, Path(str(source)).name)
            for i, row in enumerate(rows)
        ]
        if not pairs:
            raise SpecAlignError(f"{source}: no usable preference pairs (skipped {skipped}).")
        columns = list(dict.fromkeys(k for pair in pairs for k in pair))
        save_dataset(Dataset.from_list([{k: p.get(k) for k in columns} for p in pairs]), out)
        return {"rows": len(pairs), "skipped_no_preference": skipped, "schema": schema}
