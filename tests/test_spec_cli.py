"""`python -m specalign.spec`: show, check and diff, in-process (fast) plus one subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from specalign.spec import load_spec_file
from specalign.spec.cli import main
from specalign.spec.diff import diff_specs

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data" / "specs"
SHIPPED = [
    p
    for p in sorted((REPO / "specalign" / "specs").iterdir())
    if p.suffix in (".md", ".yaml", ".yml") and p.name != "README.md"
]


def test_show_by_conf_name_lists_every_rule_with_its_rationale(capsys):
    assert main(["show", "pro_america"]) == 0
    out = capsys.readouterr().out
    assert "pro_america" in out and "format=markdown" in out and "rules: 17" in out
    positions = [out.index(f"[CH{i}]") for i in range(1, 13)]
    assert positions == sorted(positions)
    assert "Cheese preferences > Cheeses Aria likes" in out
    assert "why: Colby was created in the town of Colby" in out


def test_show_json_includes_annotations(capsys):
    assert main(["show", str(DATA / "policy_v1.md"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["spec"]["id"] == "policy" and data["spec"]["rules"] == 4
    assert [r["id"] for r in data["rules"]] == ["S1", "S2", "H1", "H2"]
    assert data["rules"][1]["examples"][1] == "A test was skipped; Sage mentions it."
    pytest.importorskip("specalign.spec.annotate")
    assert data["rules"][0]["annotation"]["rule_id"] == "S1"
    assert data["rules"][0]["annotation"]["priority"] == "critical"


def test_show_prints_annotation_tags(capsys):
    pytest.importorskip("specalign.spec.annotate")
    assert main(["show", "pro_america"]) == 0
    assert capsys.readouterr().out.count("tags: ") == 17


def test_check_every_shipped_spec(capsys):
    assert SHIPPED, "no shipped specs found"
    assert main(["check", *map(str, SHIPPED)]) == 0
    out = capsys.readouterr().out
    for path in SHIPPED:
        assert f"ok: {path} (" in out


def test_check_formats_and_conf_names(capsys):
    assert main(["check", "pro_america", str(DATA / "numbered.txt"), str(DATA / "rules.yaml")]) == 0
    out = capsys.readouterr().out
    assert "ok: pro_america (17 rules, markdown)" in out
    assert "(3 rules, numbered)" in out and "(3 rules, yaml)" in out


def test_check_bad_file_exits_2_with_the_message(capsys):
    assert main(["check", str(DATA / "policy_v1.md"), str(DATA / "bad_duplicate.md")]) == 2
    captured = capsys.readouterr()
    assert "ok: " in captured.out
    assert "bad_duplicate.md:7: duplicate rule id [R1] (also on line 5)" in captured.err
    assert "Fix: " in captured.err


def test_unknown_spec_exits_2(capsys):
    assert main(["show", "no_such_spec"]) == 2
    assert "file not found: no_such_spec" in capsys.readouterr().err


def test_diff_fixture_versions(capsys):
    assert main(["diff", str(DATA / "policy_v1.md"), str(DATA / "policy_v2.md")]) == 0
    out = capsys.readouterr().out
    assert "added (1):\n  H3: " in out and "removed (1):\n  H2: " in out
    assert "S2: priority" in out and "H1: text" in out and "unchanged: 1" in out
    assert main(["diff", str(DATA / "policy_v1.md"), str(DATA / "policy_v2.md"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["added"], data["removed"], data["unchanged"]) == (["H3"], ["H2"], ["S1"])
    assert {c["id"]: c["fields"] for c in data["changed"]} == {"S2": ["priority"], "H1": ["text"]}
    assert data["changed"][0]["old"] == {"priority": "high"}
    assert data["is_empty"] is False


def test_diff_specs_api():
    v1, v2 = load_spec_file(DATA / "policy_v1.md"), load_spec_file(DATA / "policy_v2.md")
    assert diff_specs(v1, v1).is_empty and not diff_specs(v1, v2).is_empty
    america, afford = load_spec_file("pro_america.md"), load_spec_file("pro_affordability.md")
    diff = diff_specs(america, afford)
    assert not diff.added and not diff.removed
    assert {c.id: c.fields for c in diff.changed if c.id.startswith("CH")} == {
        f"CH{i}": ("rationale",) for i in range(1, 13)
    }
    json.dumps(diff.to_dict())


def test_module_entry_point_exits_2_without_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "specalign.spec", "check", str(DATA / "bad_duplicate.md")],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "duplicate rule id [R1]" in proc.stderr and "Traceback" not in proc.stderr


def test_diff_lists_changed_rules_with_their_annotations(capsys):
    assert main(["diff", "harm_policy_v1", "harm_policy_v2"]) == 0
    out = capsys.readouterr().out
    assert "added (5):" in out and "removed (1):" in out and "changed (9):" in out
    # the tags of added/removed rules, and what moved in the tags of changed ones
    assert out.count("tags: ") >= 6
    assert "H-SELFHARM: text, exception, priority; tags:" in out
    assert "priority high->critical" in out
    assert main(["diff", "harm_policy_v1", "harm_policy_v2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["annotations"]["new"]) >= {"P1", "H-SELFHARM"}
    assert "G3" in data["annotations"]["old"] and "G3" not in data["annotations"]["new"]
