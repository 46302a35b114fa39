"""`python -m specalign.spec`: show, check and diff specs without composing a run.

Writing a spec is iterative; this answers "what rules did the parser see, with which ids
and reasons" and "what changed since the last version" in a second, before any model or
Hydra config is involved. Every command takes a `conf/spec/<name>.yaml` option name or a
path to a spec document.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from specalign.errors import SpecAlignError
from specalign.spec.diff import SpecDiff, diff_specs
from specalign.spec.model import Annotation
from specalign.spec.spec import Spec, load_named_spec

WIDTH = 100


def annotations(spec: Spec) -> dict[str, Annotation]:
    """Keyword annotations, or none while the annotator is not installed."""
    try:
        from specalign.spec.annotate import KeywordAnnotator
    except ImportError:
        return {}
    return KeywordAnnotator().annotate(spec)


def header(spec: Spec) -> dict[str, Any]:
    return {
        "id": spec.id,
        "name": spec.name,
        "version": spec.version,
        "model_name": spec.model_name,
        "provider": spec.provider,
        "format": spec.format,
        "hash": spec.hash,
        "path": str(spec.path),
        "rules": len(spec.rules),
    }


def wrapped(label: str, text: str) -> str:
    return textwrap.fill(
        text, WIDTH, initial_indent=f"    {label}", subsequent_indent=" " * (4 + len(label))
    )


def describe_tags(tag: Annotation) -> str:
    return (
        f"{tag.direction} / {tag.stage} / domain={tag.domain} family={tag.family} "
        f"priority={tag.priority} exception={'yes' if tag.has_exception else 'no'} "
        f"specificity={tag.specificity}"
    )


def show(spec: Spec, as_json: bool) -> None:
    tags = annotations(spec)
    if as_json:
        rules = [
            {**rule.to_dict(), "annotation": tags[rule.id].to_dict() if rule.id in tags else None}
            for rule in spec.rules
        ]
        print(json.dumps({"spec": header(spec), "rules": rules}, indent=2, ensure_ascii=False))
        return
    by = f" ({spec.provider})" if spec.provider else ""
    print(f"{spec.id}  name={spec.name}  version={spec.version or '-'}  format={spec.format}")
    print(f"model: {spec.model_name}{by}  hash: {spec.hash[:12]}  rules: {len(spec.rules)}")
    print(f"path: {spec.path}")
    for rule in spec.rules:
        print(f"\n[{rule.id}]  {' > '.join(rule.section) or '-'}  (line {rule.line})")
        print(wrapped("", rule.text))
        if rule.rationale:
            print(wrapped("why: ", rule.rationale))
        for example in rule.examples:
            print(wrapped("example: ", example))
        if rule.exception:
            print(wrapped("exception: ", rule.exception))
        if rule.priority:
            print(f"    priority: {rule.priority}")
        tag = tags.get(rule.id)
        if tag is not None:
            print(wrapped("tags: ", describe_tags(tag)))


def tag_changes(old: Annotation | None, new: Annotation | None) -> str:
    """The annotation fields that differ between two versions of a rule, `a->b` each."""
    if old is None or new is None:
        return ""
    fields = ("direction", "stage", "domain", "family", "priority", "has_exception")
    moved = [
        f"{f} {getattr(old, f)}->{getattr(new, f)}"
        for f in fields
        if getattr(old, f) != getattr(new, f)
    ]
    return "; tags: " + ", ".join(moved) if moved else ""


def print_diff(diff: SpecDiff, as_json: bool) -> None:
    """Rules added, removed and changed by id, each with its annotation (what moved)."""
    old, new = diff.old, diff.new
    old_tags, new_tags = annotations(old), annotations(new)
    if as_json:
        data = diff.to_dict()
        involved = {*diff.added, *diff.removed, *(c.id for c in diff.changed)}
        data["annotations"] = {
            "old": {i: t.to_dict() for i, t in old_tags.items() if i in involved},
            "new": {i: t.to_dict() for i, t in new_tags.items() if i in involved},
        }
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return
    print(f"old: {old.id} {old.version or '-'} ({old.hash[:12]}, {len(old.rules)} rules)")
    print(f"new: {new.id} {new.version or '-'} ({new.hash[:12]}, {len(new.rules)} rules)")
    for label, ids, spec, tags in (
        ("added", diff.added, new, new_tags),
        ("removed", diff.removed, old, old_tags),
    ):
        print(f"{label} ({len(ids)}):" + ("" if ids else " -"))
        for rule_id in ids:
            tag = tags.get(rule_id)
            print(f"  {rule_id}: {textwrap.shorten(spec.rule(rule_id).text, 70)}")
            if tag is not None:
                print(wrapped("tags: ", describe_tags(tag)))
    print(f"changed ({len(diff.changed)}):" + ("" if diff.changed else " -"))
    for change in diff.changed:
        moved = tag_changes(old_tags.get(change.id), new_tags.get(change.id))
        print(f"  {change.id}: {', '.join(change.fields)}{moved}")
    print(f"unchanged: {len(diff.unchanged)}")


def check(paths: Sequence[str]) -> int:
    """Load every spec, reporting each; 2 if any failed (all are still checked)."""
    failed = 0
    for path in paths:
        try:
            spec = load_named_spec(path)
        except SpecAlignError as err:
            print(err, file=sys.stderr)
            failed += 1
            continue
        print(f"ok: {path} ({len(spec.rules)} rules, {spec.format})")
    return SpecAlignError.exit_code if failed else 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m specalign.spec", description="Show, check and diff model specs."
    )
    commands = top.add_subparsers(dest="command", required=True)
    show_cmd = commands.add_parser("show", help="the spec's header and every rule")
    show_cmd.add_argument("spec", metavar="NAME_OR_PATH", help="conf/spec name or a file")
    show_cmd.add_argument("--json", action="store_true", help="machine-readable output")
    check_cmd = commands.add_parser("check", help="parse specs, exit 2 on the first problem")
    check_cmd.add_argument("paths", nargs="+", metavar="PATH")
    diff_cmd = commands.add_parser("diff", help="rules added, removed and changed")
    diff_cmd.add_argument("old", metavar="OLD")
    diff_cmd.add_argument("new", metavar="NEW")
    diff_cmd.add_argument("--json", action="store_true", help="machine-readable output")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a SpecAlignError prints its message (no traceback) and returns 2."""
    args = parser().parse_args(argv)
    try:
        if args.command == "show":
            show(load_named_spec(args.spec), args.json)
        elif args.command == "check":
            return check(args.paths)
        else:
            print_diff(diff_specs(load_named_spec(args.old), load_named_spec(args.new)), args.json)
    except SpecAlignError as err:
        print(err, file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:  # `... | head`: the reader left; not an error worth a traceback
        sys.stderr.close()
    return 0
