"""Spec loading errors stop the run at plan time with the file, the key and the fix."""

from __future__ import annotations

import pytest
from helpers import run_cli

from specalign.errors import SpecAlignError
from specalign.pipeline import RunContext, build_plan


def test_missing_spec_file_names_key_and_fix(cfg_factory, tmp_path):
    with pytest.raises(SpecAlignError, match=r"spec.document: file not found: .*nope.md.*Fix"):
        build_plan(RunContext(cfg_factory(f"spec.document={tmp_path}/nope.md")))


def test_non_utf8_spec_names_file_line_and_byte(cfg_factory, tmp_path):
    bad = tmp_path / "latin1.md"
    bad.write_bytes("# Règles\n".encode("latin-1"))
    with pytest.raises(SpecAlignError, match=r"latin1.md:1: not UTF-8 \(byte 3"):
        build_plan(RunContext(cfg_factory(f"spec.document={bad}")))


def test_empty_spec_is_rejected(cfg_factory, tmp_path):
    empty = tmp_path / "empty.md"
    empty.write_text("\n  \n")
    with pytest.raises(SpecAlignError, match="the spec is empty"):
        build_plan(RunContext(cfg_factory(f"spec.document={empty}")))


def test_spec_parse_error_stops_the_plan(cfg_factory, tmp_path):
    bad = tmp_path / "prio.md"
    bad.write_text("## Rules\n\n- [A1] Be kind.\n  Priority: urgent\n")
    with pytest.raises(SpecAlignError, match=r"prio.md:4: unknown priority 'urgent'.*Fix"):
        build_plan(RunContext(cfg_factory(f"spec.document={bad}")))


def test_context_spec_has_rules(cfg_factory):
    spec = RunContext(cfg_factory()).spec
    assert spec.id == "pro_america" and len(spec.rules) == 17 and spec.format == "markdown"


def test_bad_demonstrations_row_names_file_and_line(cfg_factory, tmp_path):
    demos = tmp_path / "demos.jsonl"
    demos.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"text": "x"}\n')
    stage = ("stage=sft", "~stage.steps.eval_base", "~stage.steps.eval_sft")  # no evals first
    cfg = cfg_factory("backbone=tiny_random", *stage, f"spec.demonstrations={demos}")
    from specalign.app import run

    with pytest.raises(SpecAlignError, match=r"demos.jsonl:2: missing field\(s\) \['messages'\]"):
        run(cfg, tmp_path)


def test_cli_spec_error_exits_2_before_any_model_loads(tmp_path):
    proc = run_cli(tmp_path, f"spec.document={tmp_path}/nope.md", "logger=none", check=False)
    assert proc.returncode == 2
    assert "spec.document: file not found" in proc.stdout + proc.stderr
    assert not (tmp_path / "cache").exists() and not (tmp_path / "store").exists()


def test_cli_spec_parse_error_exits_2_before_any_model_loads(tmp_path):
    bad = tmp_path / "dup.md"
    bad.write_text("## Rules\n\n- [A1] Be kind.\n- [A1] Be brief.\n")
    proc = run_cli(tmp_path, f"spec.document={bad}", "logger=none", check=False)
    assert proc.returncode == 2
    assert "dup.md:4: duplicate rule id [A1] (also on line 3)" in proc.stdout + proc.stderr
    assert not (tmp_path / "cache").exists() and not (tmp_path / "store").exists()
