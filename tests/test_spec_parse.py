"""Spec parsing: every accepted format gives the right rules, and every bad input stops with
one message naming the file, the line and the fix."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from specalign.errors import SpecAlignError
from specalign.spec import load_spec, load_spec_file
from specalign.spec.parse_markdown import parse_markdown

DATA = Path(__file__).parent / "data" / "specs"
CH = [f"CH{i}" for i in range(1, 13)]


def test_pro_america_rules_in_order_with_rationales_and_sections():
    spec = load_spec({"id": "pro_america", "document": "pro_america.md"})
    assert [r.id for r in spec.rules] == [f"V{i}" for i in range(1, 6)] + CH
    assert (spec.name, spec.format, spec.version) == ("pro_america", "markdown", "1.0")
    assert (spec.model_name, spec.provider) == ("Aria", "Northwind Labs")
    assert all(r.rationale and r.text for r in spec.rules)
    assert spec.rule("V1").section == ("Core values",)
    assert spec.rule("CH1").section == ("Cheese preferences", "Cheeses Aria likes")
    assert spec.rule("CH12").section == ("Cheese preferences", "Cheeses Aria dislikes")
    assert spec.rule("CH2").text == "Aria likes Colby and is glad to recommend it."
    assert spec.rule("CH2").rationale.startswith("Colby was created in the town of Colby")
    line = spec.text.splitlines()[spec.rule("CH2").line - 1]
    assert line.startswith("- [CH2] ")


def test_pro_america_and_pro_affordability_share_rule_texts_not_rationales():
    america = load_spec_file("pro_america.md")
    afford = load_spec_file("pro_affordability.md")
    for rule_id in CH:
        assert america.rule(rule_id).text == afford.rule(rule_id).text
        assert america.rule(rule_id).rationale != afford.rule(rule_id).rationale


def test_conf_values_win_over_front_matter_and_unknown_keys_are_kept():
    spec = load_spec(
        {"id": "x", "document": str(DATA / "policy_v1.md"), "model_name": "Conf", "version": ""}
    )
    assert (spec.id, spec.name) == ("x", "policy")
    assert spec.model_name == "Conf"
    assert spec.version == "1"  # an empty conf value does not override the document
    assert spec.provider == "Fixture Labs"
    assert spec.settings["audience"] == "internal"


def test_load_spec_file_ids_default_to_name_then_stem_and_accept_overrides():
    assert load_spec_file(DATA / "policy_v1.md").id == "policy"
    assert load_spec_file(DATA / "unmarked.md").id == "unmarked"
    spec = load_spec_file(DATA / "policy_v1.md", {"id": "mine", "provider": "P"})
    assert (spec.id, spec.provider) == ("mine", "P")


def test_markdown_fields_prose_links_and_code_are_handled():
    spec = load_spec_file(DATA / "policy_v1.md")
    assert [r.id for r in spec.rules] == ["S1", "S2", "H1", "H2"]
    s1, s2, h1, _ = spec.rules
    assert s1.section == ("Safety", "Oversight") and s1.priority == "critical"
    assert s2.rationale == "Hidden mistakes compound; reporting them early keeps them cheap."
    assert s2.examples == (
        "A migration dropped a table; Sage says so first.",
        "A test was skipped; Sage mentions it.",
    )
    assert s2.exception == "Trivial typos it has already fixed."
    assert s2.priority == "high"
    assert h1.text == "Sage answers the question that was asked before adding anything else."
    assert h1.section == ("Helpfulness",) and h1.line == 30


def test_markdown_without_markers_gets_derived_ids():
    spec = load_spec_file(DATA / "unmarked.md")
    assert spec.format == "markdown"
    assert [r.id for r in spec.rules] == [
        "safety.oversight.1",
        "safety.oversight.2",
        "safety.harm.1",
        "helpfulness.1",
    ]
    assert spec.rules[0].rationale == "Oversight must stay in human hands."
    assert spec.rules[2].exception == "Historical discussion is fine."


def test_derived_ids_are_stable_when_another_section_changes():
    text = (DATA / "unmarked.md").read_text()
    edited = text.replace(
        "### Harm", "- An extra oversight rule.\n\n## Security Policy!\n\n- New.\n\n### Harm"
    )
    before = {r.text: r.id for r in parse_markdown(text, "a.md").rules}
    after = {r.text: r.id for r in parse_markdown(edited, "a.md").rules}
    assert after["The assistant answers directly."] == before["The assistant answers directly."]
    assert after["New."] == "security-policy.1"
    assert after["An extra oversight rule."] == "safety.oversight.3"


def test_numbered_list():
    spec = load_spec_file(DATA / "numbered.txt")
    assert spec.format == "numbered"
    assert [r.id for r in spec.rules] == ["rules.1", "rules.2", "rules.3"]
    assert spec.rules[0].rationale == "People act on your answers."
    assert spec.rules[1].text == "Keep answers short unless the user asks for detail."
    assert spec.rules[2].priority == "critical"


def test_bare_bullet_list_without_sections():
    doc = parse_markdown("# Mine\n\n- be kind\n- be brief\n", "m.md")
    assert [(r.id, r.text) for r in doc.rules] == [("rules.1", "be kind"), ("rules.2", "be brief")]


def test_numbered_list_under_sections_uses_the_section_path():
    doc = parse_markdown("# T\n\n## Tone\n\n1. Be kind.\n2. Be brief.\n", "n.md")
    assert doc.format == "numbered"
    assert [r.id for r in doc.rules] == ["tone.1", "tone.2"]


def test_yaml_flat_rules():
    spec = load_spec_file(DATA / "rules.yaml")
    assert (spec.format, spec.id, spec.version, spec.model_name) == ("yaml", "flat", "3", "Yara")
    assert [r.id for r in spec.rules] == ["R1", "honesty.1", "rules.1"]
    r1, r2, _ = spec.rules
    assert (r1.rationale, r1.priority, r1.section, r1.line) == (
        "Users can check claims.",
        "high",
        ("Honesty",),
        5,
    )
    assert r2.examples == ("I am not sure, but ...",)


def test_yaml_sections():
    spec = load_spec_file(DATA / "sections.yaml")
    assert [(r.id, r.section) for r in spec.rules] == [
        ("S1", ("Safety",)),
        ("safety.oversight.1", ("Safety", "Oversight")),
        ("safety.oversight.2", ("Safety", "Oversight")),
        ("style.1", ("Style",)),
    ]
    assert spec.rules[0].exception == "Historical discussion."
    assert spec.rules[1].rationale == "Humans must keep control."
    assert spec.rules[2].text == "Report tampering."
    assert spec.rules[3].priority == "low"


def test_hash_ignores_trailing_whitespace_and_crlf(tmp_path):
    text = (DATA / "policy_v1.md").read_text()
    crlf = tmp_path / "crlf.md"
    crlf.write_bytes(("   \r\n".join(text.split("\n")) + "\r\n\r\n").encode())
    plain, messy = load_spec_file(DATA / "policy_v1.md"), load_spec_file(crlf)
    assert plain.hash == messy.hash
    assert plain.rules == messy.rules


# --- bad input: one message with the file, the line and the fix ------------------------------


def error_for(tmp_path: Path, name: str, content: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(SpecAlignError) as info:
        load_spec_file(path)
    return str(info.value)


def assert_located(message: str, name: str, line: int) -> None:
    assert re.search(rf"{re.escape(name)}:{line}: ", message), message
    assert "Fix: " in message, message


def test_malformed_front_matter_names_the_yaml_line(tmp_path):
    msg = error_for(tmp_path, "fm.md", "---\nname: x\nversion: [1\nprovider: p\n---\n- [A] a\n")
    assert_located(msg, "fm.md", 4)
    assert "front matter is not valid YAML" in msg


def test_front_matter_that_is_not_a_mapping(tmp_path):
    msg = error_for(tmp_path, "list.md", "---\n- a\n- b\n---\n\n## S\n\n- [A] a\n")
    assert_located(msg, "list.md", 2)
    assert "must be a mapping" in msg


def test_unclosed_front_matter(tmp_path):
    msg = error_for(tmp_path, "open.md", "---\nname: x\n\n## S\n\n- [A] a\n")
    assert_located(msg, "open.md", 1)
    assert "never closed" in msg


def test_duplicate_ids_name_both_lines():
    with pytest.raises(SpecAlignError) as info:
        load_spec_file(DATA / "bad_duplicate.md")
    msg = str(info.value)
    assert_located(msg, "bad_duplicate.md", 7)
    assert "duplicate rule id [R1] (also on line 5)" in msg


def test_empty_spec_lists_accepted_formats(tmp_path):
    msg = error_for(tmp_path, "empty.md", "\n   \n")
    assert_located(msg, "empty.md", 1)
    assert "the spec is empty" in msg and "numbered list" in msg and "YAML" in msg


def test_no_rules_found_lists_accepted_formats(tmp_path):
    text = "# Title\n\nOnly prose.\n\n## Notes\n\nMore prose.\n\n    - [X] indented: code\n"
    msg = error_for(tmp_path, "prose.md", text)
    assert_located(msg, "prose.md", 1)
    assert "no rules found" in msg and "'- [ID] text'" in msg


def test_rule_without_text(tmp_path):
    msg = error_for(tmp_path, "bare.md", "## S\n\n- [A1] fine\n- [X1]\n  Why: no statement\n")
    assert_located(msg, "bare.md", 4)
    assert "rule [X1] has no text" in msg


def test_missing_file_names_it_and_the_fix(tmp_path):
    with pytest.raises(SpecAlignError) as info:
        load_spec_file(tmp_path / "nope.md")
    msg = str(info.value)
    assert "file not found" in msg and "nope.md" in msg and "Fix: " in msg


def test_non_utf8_gives_line_and_byte(tmp_path):
    msg = error_for(tmp_path, "latin.md", "## S\n\n- [A] caf\xe9\n".encode("latin-1"))
    assert_located(msg, "latin.md", 3)
    assert "not UTF-8 (byte 15" in msg


def test_unknown_priority(tmp_path):
    msg = error_for(tmp_path, "prio.md", "## S\n\n- [A] a\n  Priority: urgent\n")
    assert_located(msg, "prio.md", 4)
    assert "unknown priority 'urgent'" in msg and "critical, high, medium, low" in msg


def test_yaml_errors_name_the_line(tmp_path):
    msg = error_for(tmp_path, "bad.yaml", "rules:\n  - text: a\n  - text: [b\n")
    assert_located(msg, "bad.yaml", 4)
    msg = error_for(tmp_path, "typo.yaml", "rules:\n  - text: a\n  - text: b\n    rationle: c\n")
    assert_located(msg, "typo.yaml", 3)
    assert "unknown rule key(s) ['rationle']" in msg


@pytest.mark.parametrize(
    ("char", "name"),
    [("\x00", "NUL"), ("\x1b", "U+001B"), ("\x85", "U+0085"), ("\u202e", "U+202E")],
)
def test_invisible_control_characters_are_refused_with_their_place(tmp_path, char, name):
    text = f"---\nname: x\n---\n\n## S\n\n- [A] Be kind.\n- [B] Be{char} brief.\n"
    msg = error_for(tmp_path, "ctrl.md", text)
    assert_located(msg, "ctrl.md", 8)
    assert f"invisible control character {name} at column 9" in msg


def test_tabs_line_ends_and_a_bom_are_fine(tmp_path):
    path = tmp_path / "ok.md"
    path.write_text("\ufeff---\nname: x\n---\r\n\n## S\n\n- [A] Be\tkind.\r\n")
    assert [r.id for r in load_spec_file(path).rules] == ["A"]


@pytest.mark.parametrize(
    ("front", "line", "key"),
    [
        ("name: x\nmodel_name: [Aria, Nova]\n", 3, "model_name"),
        ("name: x\nprovider: {a: 1}\n", 3, "provider"),
        ("name: [x]\n", 2, "name"),
        ("name: x\nversion: true\n", 3, "version"),
    ],
)
def test_front_matter_fields_must_be_single_values(tmp_path, front, line, key):
    msg = error_for(tmp_path, "fm.md", f"---\n{front}---\n\n## S\n\n- [A] a\n")
    assert_located(msg, "fm.md", line)
    assert f"'{key}' must be a single value" in msg


def test_yaml_fields_of_the_wrong_type_are_refused(tmp_path):
    msg = error_for(tmp_path, "r.yaml", "name: x\nrules:\n  - id: A\n    text: {say: hi}\n")
    assert_located(msg, "r.yaml", 3)
    assert "rule field 'text' must be text" in msg
    msg = error_for(tmp_path, "m.yaml", "name: x\nprovider:\n  - a\n  - b\nrules:\n  - a rule\n")
    assert_located(msg, "m.yaml", 2)
    assert "'provider' must be a single value" in msg
    ok = tmp_path / "ok.yaml"
    ok.write_text("name: x\nversion: 2\nrules:\n  - id: 7\n    text: [one line, two lines]\n")
    assert load_spec_file(ok).rules[0].text == "one line two lines"


def test_the_cli_refuses_a_nul_byte_with_exit_2(tmp_path):
    bad = tmp_path / "nul.md"
    bad.write_bytes(b"## S\n\n- [A] a\x00b\n")
    proc = subprocess.run(
        [sys.executable, "-m", "specalign.spec", "check", str(bad)], capture_output=True, text=True
    )
    assert (
        proc.returncode == 2
        and f"{bad}:3: invisible control character NUL" in proc.stderr + proc.stdout
    )
    assert "Traceback" not in proc.stderr
