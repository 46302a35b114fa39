"""The stage engine: keys, reuse, sweeps, dry runs, kills and concurrent processes.

Model-free steps (tests/pipeline_fakes.py) keep these fast; the real SFT pipeline is
exercised in test_sft_pipeline.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import REPO, cli_command, cli_env, run_cli, runlog

from specalign.app import run
from specalign.errors import ConfigError, StepNotImplementedError
from specalign.pipeline import ArtifactStore, RunContext, build_plan


def keys(cfg) -> dict[str, str]:
    return {p.name: p.key for p in build_plan(RunContext(cfg)).steps}


def test_key_changes_when_and_only_when_a_relevant_setting_or_input_changes(cfg_factory):
    base = keys(cfg_factory("stage=fake"))
    assert base == keys(cfg_factory("stage=fake")), "keys must be deterministic"
    # irrelevant: logging, paths, the experiment name, the backbone (no fake step uses it)
    assert base == keys(cfg_factory("stage=fake", "logger=wandb", "name=other"))
    assert base == keys(cfg_factory("stage=fake", "backbone=qwen3_8b", "trainer=full"))
    # a setting of the middle step: it and its downstream change, upstream does not
    changed = keys(cfg_factory("stage=fake", "stage.steps.second.text=' there'"))
    assert changed["first"] == base["first"]
    assert changed["second"] != base["second"]
    assert changed["per_spec"] != base["per_spec"]
    # a spec change reaches only the step that uses the spec
    other_spec = keys(cfg_factory("stage=fake", "spec=pro_affordability"))
    assert other_spec["first"] == base["first"] and other_spec["second"] == base["second"]
    assert other_spec["per_spec"] != base["per_spec"]


def test_spec_file_content_is_in_the_key(cfg_factory, tmp_path):
    spec_file = tmp_path / "mine.md"
    spec_file.write_text("# Mine\n\n- be kind\n")
    one = keys(cfg_factory("stage=fake", f"spec.document={spec_file}"))
    spec_file.write_text("# Mine\n\n- be kind   \r\n")  # same words: same hash
    assert keys(cfg_factory("stage=fake", f"spec.document={spec_file}")) == one
    spec_file.write_text("# Mine\n\n- be very kind\n")
    edited = keys(cfg_factory("stage=fake", f"spec.document={spec_file}"))
    assert edited["per_spec"] != one["per_spec"]


def test_second_identical_run_reuses_everything(cfg_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("SPECALIGN_TEST_RUNLOG", str(tmp_path / "runlog.txt"))
    first = run(cfg_factory("stage=fake"), tmp_path)
    assert [r.cached for r in first] == [False, False, False]
    second = run(cfg_factory("stage=fake"), tmp_path)
    assert [r.cached for r in second] == [True, True, True]
    assert len(runlog(tmp_path)) == 3, "the second run must execute nothing"
    artifact = second[1].artifact
    assert (artifact.path / "text.txt").read_text() == "hello world"
    manifest = json.loads((artifact.path / "manifest.json").read_text())
    assert manifest["key"] == artifact.key
    assert manifest["inputs"]["dataset"]["key"] == first[0].artifact.key
    assert {"torch", "transformers", "trl", "python"} <= set(manifest["versions"])
    assert "git_sha" in manifest and manifest["timings"]["seconds"] >= 0
    # changing one setting recomputes that step and what is downstream of it only
    third = run(cfg_factory("stage=fake", "stage.steps.second.text=' there'"), tmp_path)
    assert [r.cached for r in third] == [True, False, False]


def test_dry_run_prints_plan_and_runs_nothing(cfg_factory, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SPECALIGN_TEST_RUNLOG", str(tmp_path / "runlog.txt"))
    run(cfg_factory("stage=fake", "stage.steps.second.text=x"), tmp_path)
    capsys.readouterr()
    assert run(cfg_factory("stage=fake", "dry_run=true"), tmp_path) == []
    printed = capsys.readouterr().out
    plan = build_plan(RunContext(cfg_factory("stage=fake")))
    for planned in plan.steps:
        assert planned.name in printed and planned.key in printed
    lines = {line.split()[0]: line for line in printed.splitlines() if line.startswith("  ")}
    assert "cached" in lines["first"] and "to run" in lines["second"]
    assert "2 of 3 steps to run" in printed
    assert len(runlog(tmp_path)) == 3, "dry run executed a step"


def test_missing_step_fails_at_start_naming_it(cfg_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("SPECALIGN_TEST_RUNLOG", str(tmp_path / "runlog.txt"))
    with pytest.raises(StepNotImplementedError, match="not implemented yet: later"):
        run(cfg_factory("stage=fake_missing"), tmp_path)
    assert runlog(tmp_path) == [], "nothing may run before the whole plan is valid"


def test_input_wiring_errors_name_the_step(cfg_factory):
    with pytest.raises(ConfigError, match="'second' input 'dataset' names 'nope'"):
        build_plan(RunContext(cfg_factory("stage=fake", "stage.steps.second.inputs.dataset=nope")))
    with pytest.raises(ConfigError, match="needs inputs \\['dataset'\\]"):
        build_plan(RunContext(cfg_factory("stage=fake", "~stage.steps.per_spec.inputs")))


def test_cli_exits_2_with_message_for_missing_step(tmp_path):
    proc = run_cli(tmp_path, "stage=fake_missing", "logger=none", check=False)
    assert proc.returncode == 2
    assert "not implemented yet: later" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_multirun_members_share_common_artifacts(tmp_path):
    proc = run_cli(
        tmp_path,
        "stage=fake",
        "logger=none",
        "spec=pro_america,pro_affordability",
        flags=("--multirun",),
    )
    assert "#0" in proc.stdout + proc.stderr and "#1" in proc.stdout + proc.stderr
    executed = [line.split()[0] for line in runlog(tmp_path)]
    assert sorted(executed) == ["first", "per_spec", "per_spec", "second"]
    assert len(list((tmp_path / "store" / "per_spec").glob("*/manifest.json"))) == 2
    assert len(list((tmp_path / "multirun").glob("*/*/*/summary.json"))) == 2


def test_paths_root_moves_run_dirs_and_store(tmp_path):
    run_cli(tmp_path, "stage=fake", "logger=none")
    assert list((tmp_path / "runs").glob("*/*/summary.json"))
    assert (tmp_path / "store" / "first").is_dir()
    summary = json.loads(next((tmp_path / "runs").glob("*/*/summary.json")).read_text())
    assert all(Path(s["artifact"]).is_relative_to(tmp_path) for s in summary["steps"])


def start_slow_run(tmp_path: Path) -> subprocess.Popen[str]:
    cmd = cli_command(tmp_path, "stage=fake_slow", "logger=none")
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env=cli_env(tmp_path),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def start_slow_launch(tmp_path: Path) -> subprocess.Popen[str]:
    """The same slow stage on 2 ranks (torchrun, gloo): rank 0 decides, locks and commits."""
    cmd = cli_command(tmp_path, "stage=fake_slow", "logger=none")
    cmd[1:3] = ["-m", "specalign.launch", "-n", "2"]
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env=cli_env(tmp_path),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_concurrent_multi_rank_runs_compute_each_key_once(tmp_path):
    """Two 2-rank jobs race on one cold store: the second waits on the key's lock, finds the
    committed artifact and reuses it (re-checking after the lock, as one process does)."""
    procs = [start_slow_launch(tmp_path) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    executed = [line.split()[0] for line in runlog(tmp_path)]
    assert executed.count("first") == 1 and executed.count("slow") == 1, executed
    assert len(list((tmp_path / "store").glob("*/*/manifest.json"))) == 2


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def test_killed_run_leaves_no_half_artifact_and_resumes(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    progress = lambda: list((tmp_path / "store" / "slow" / ".work").glob("*/progress.json"))  # noqa: E731
    proc = start_slow_run(tmp_path)
    wait_for(lambda: bool(progress()) and json.loads(progress()[0].read_text())["ticks"] >= 5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    slow_dir = tmp_path / "store" / "slow"
    assert [p.name for p in slow_dir.iterdir() if not p.name.startswith(".")] == [], (
        "a killed step must leave no artifact"
    )
    key = progress()[0].parent.name
    assert store.get("slow", "dataset", key) is None
    run_cli(tmp_path, "stage=fake_slow", "logger=none")
    artifact = store.get("slow", "dataset", key)
    assert artifact is not None
    assert (artifact.path / "count.txt").read_text() == "40"
    assert not (artifact.path / "partial.txt").exists(), "the killed run's partial output leaked"
    assert artifact.manifest["metrics"]["resumed_at"] >= 5, "did not resume from saved progress"
    assert not (slow_dir / ".work" / key).exists(), "work dir should be cleaned after commit"


def test_concurrent_runs_compute_each_key_once(tmp_path):
    procs = [start_slow_run(tmp_path) for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    executed = [line.split()[0] for line in runlog(tmp_path)]
    assert executed.count("first") == 1 and executed.count("slow") == 1, executed
    manifests = list((tmp_path / "store").glob("*/*/manifest.json"))
    assert len(manifests) == 2
    for manifest in manifests:
        json.loads(manifest.read_text())  # complete, parseable
