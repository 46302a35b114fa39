"""A sweep's members as a report reads them: each member's run directory holds its
`summary.json` (a run) or `plan.json` (a dry run), both naming the member's command-line
choices; the choices that differ between members are the sweep's axes.

A single run's directory is a sweep of one member, so every report also works on one run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specalign.errors import SpecAlignError

SUMMARY = "summary.json"
PLAN = "plan.json"
FAILED = "failed.json"
# overrides that say where or how a run goes, not what it computes: never a sweep axis
NOISE = ("paths.", "hydra.", "logger", "dry_run", "resume", "rank_timeout_min", "report.")
# axes whose members are replicates of one arm (pooled in reports, not compared)
REPLICATE_AXES = ("seed",)


def choices(overrides: list[str] | tuple[str, ...]) -> dict[str, str]:
    """`["spec=pro_america", "+x=1", "hydra.job.chdir=true"]` -> `{"spec": "pro_america",
    "x": "1"}`: what a member chose, without the settings of where and how it ran."""
    out = {}
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        if sep and not key.startswith(NOISE):
            out[key] = value
    return out


@dataclass
class Member:
    """One run of a sweep: its directory, number, choices and what it wrote."""

    directory: Path
    num: int
    choices: dict[str, str]
    summary: dict[str, Any] | None = None  # summary.json (a run that finished)
    plan: dict[str, Any] | None = None  # plan.json (a dry run)
    failed: str | None = None  # the one-line error of a member that stopped

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.choices.items()) or "(defaults)"

    def steps(self) -> list[dict[str, Any]]:
        source = self.summary or self.plan or {}
        return list(source.get("steps", []))


@dataclass
class Sweep:
    directory: Path
    members: list[Member]
    axes: dict[str, list[str]] = field(default_factory=dict)  # axis -> values, in order

    @property
    def experiment(self) -> str:
        for member in self.members:
            data = member.summary or member.plan
            if data:
                return str(data.get("experiment", self.directory.name))
        return self.directory.name

    def varying(self, member: Member) -> dict[str, str]:
        """The member's values on the sweep's axes (what tells it apart from the others)."""
        return {axis: member.choices.get(axis, "-") for axis in self.axes}


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as err:
        raise SpecAlignError(f"{path}: not valid JSON ({err.msg}); was the run killed?") from err


def member_dirs(root: Path) -> list[Path]:
    """`root` itself when it is one run's directory, else every run directory below it."""
    marks = (SUMMARY, PLAN, FAILED)
    if any((root / m).is_file() for m in marks):
        return [root]
    found = {p.parent for m in marks for p in root.rglob(m)}
    return sorted(found, key=lambda d: (len(d.parts), natural(d.name), str(d)))


def natural(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (1 << 30, name)


def load_sweep(root: Path) -> Sweep:
    """The members under `root` (a `--multirun` directory or one run's directory)."""
    root = Path(root)
    if not root.is_dir():
        raise SpecAlignError(f"{root}: no such directory. Fix: give a run or multirun directory.")
    members = []
    for n, directory in enumerate(member_dirs(root)):
        summary, plan = read_json(directory / SUMMARY), read_json(directory / PLAN)
        failure = read_json(directory / FAILED)
        data = summary or plan or failure or {}
        num = int(directory.name) if directory.name.isdigit() else n
        members.append(
            Member(
                directory,
                num,
                choices(data.get("overrides", [])),
                summary,
                plan,
                failure.get("error") if failure else None,
            )
        )
    if not members:
        raise SpecAlignError(
            f"{root}: no run found (no {SUMMARY} or {PLAN} below it). Fix: point at a run "
            "directory (outputs/runs/...) or a sweep directory (outputs/multirun/...)."
        )
    return Sweep(root, members, axes_of(members))


def axes_of(members: list[Member]) -> dict[str, list[str]]:
    """Choices whose value differs between members, with their values in first-seen order."""
    keys = [k for m in members for k in m.choices]
    axes: dict[str, list[str]] = {}
    for key in dict.fromkeys(keys):
        values = list(dict.fromkeys(m.choices.get(key, "-") for m in members))
        if len(values) > 1:
            axes[key] = values
    return axes
