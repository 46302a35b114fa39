"""Read an offline W&B run file (`run-<id>.wandb`) in tests: what a `wandb sync` would upload.

wandb 0.31's Python side no longer ships a reader (the service is in Go), so this is the
file's framing, LevelDB's log format: a 7-byte header (":W&B", magic 0xBEE1, version 0), then
32 KiB blocks of chunks `crc32 (4) | length (2) | type (1) | data`, type FULL=1 FIRST=2
MIDDLE=3 LAST=4, a block's tail shorter than a header left as zero padding. Each record is a
`wandb_internal_pb2.Record`.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

BLOCK = 32768
HEADER = 7


def records(path: Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a W&B run file"
    out, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if kind == 0 and length == 0:
            pos += left  # padding to the end of the block
            continue
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


def run_contents(path: Path) -> dict[str, Any]:
    """{run: {id, group, job_type, display_name}, config: {...}, summary: {...},
    history_keys: [...]} of one offline run file."""
    out: dict[str, Any] = {"run": {}, "config": {}, "summary": {}, "history_keys": set()}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            out["run"] = {"id": r.run_id, "group": r.run_group, "job_type": r.job_type,
                          "display_name": r.display_name, "notes": r.notes}  # fmt: skip
            for item in r.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "summary":
            for item in record.summary.update:
                key = item.key or "/".join(item.nested_key)
                out["summary"][key] = json.loads(item.value_json)
        elif kind == "history":
            out["history_keys"].update(i.key or "/".join(i.nested_key) for i in record.history.item)
    return out


def offline_runs(wandb_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Every offline run under `wandb_dir`, by run id (a resumed run has several files)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(Path(wandb_dir).rglob("run-*.wandb")):
        contents = run_contents(path)
        found.setdefault(contents["run"]["id"], []).append(contents)
    return found
