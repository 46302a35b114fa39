"""A sweep's work, deduplicated: each distinct step (name and key) once, with the members
that use it. In a dry run it shows what the sweep will compute and what its members share
(one `sft` for both cheese specs, one base-model eval); in a report, what ran once and was
reused."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from specalign.report.members import Sweep


@dataclass
class SharedStep:
    name: str
    key: str
    cached: bool  # in the store already (dry run) / reused by every member (run)
    members: list[int] = field(default_factory=list)


def shared_steps(sweep: Sweep) -> list[SharedStep]:
    """Distinct (step, key) pairs in first-seen order, each with its members' numbers."""
    seen: dict[tuple[str, str], SharedStep] = {}
    for member in sweep.members:
        for step in member.steps():
            ident = (step["name"], step["key"])
            if ident not in seen:
                seen[ident] = SharedStep(step["name"], step["key"], bool(step.get("cached")))
            else:
                seen[ident].cached = seen[ident].cached and bool(step.get("cached"))
            if member.num not in seen[ident].members:
                seen[ident].members.append(member.num)
    return list(seen.values())


def member_list(numbers: list[int], total: int) -> str:
    if len(numbers) == total > 1:
        return "all"
    return " ".join(f"#{n}" for n in numbers)


def sweep_plan_lines(sweep: Sweep) -> list[str]:
    members = [m for m in sweep.members if m.plan or m.summary]
    steps = shared_steps(sweep)
    uses = sum(len(s.members) for s in steps)
    todo = sum(not s.cached for s in steps)
    lines = [
        f"sweep plan for {sweep.experiment}: {len(members)} members, {uses} step uses, "
        f"{len(steps)} distinct steps ({sum(len(s.members) > 1 for s in steps)} shared), "
        f"{todo} to run",
    ]
    for m in members:
        axes = sweep.varying(m)
        lines.append(f"  #{m.num}: " + (" ".join(f"{k}={v}" for k, v in axes.items()) or m.label))
    lines += [f"  #{m.num}: stopped: {m.failed}" for m in sweep.members if m.failed]
    width = max((len(s.name) for s in steps), default=4)
    for s in steps:
        state = "cached" if s.cached else "to run"
        who = member_list(s.members, len(members))
        lines.append(f"  {s.name:<{width}}  {s.key}  {state:<7} members: {who}")
    return lines


def print_sweep_plan(sweep: Sweep) -> None:
    print("\n".join(sweep_plan_lines(sweep)))


def shared_work_rows(sweep: Sweep) -> list[dict[str, Any]]:
    """The report's table: each distinct step, who used it, who ran it."""
    ran: dict[tuple[str, str], list[int]] = {}
    for member in sweep.members:
        for step in member.steps():
            if not step.get("cached", True):
                ran.setdefault((step["name"], step["key"]), []).append(member.num)
    total = len([m for m in sweep.members if m.summary])
    return [
        {
            "step": s.name,
            "key": s.key,
            "members": member_list(s.members, total),
            "computed_by": member_list(ran.get((s.name, s.key), []), total) or "earlier run",
        }
        for s in shared_steps(sweep)
    ]
