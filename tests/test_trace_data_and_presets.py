"""Where TRACE's data comes from and how its sweep shares work (no model): preference data
from `datasets` sources (PKU-SafeRLHF mapped as the authors do), the refusal matcher the
policy-agreement evaluator decides with, and the policy-shift preset's plans."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import CONF, compose_config
from omegaconf import OmegaConf

from specalign.app import run
from specalign.errors import SpecAlignError
from specalign.eval.refusal import is_refusal
from specalign.pipeline.context import RunContext
from specalign.pipeline.dataset_io import load_dataset
from specalign.pipeline.plan import build_plan

SOURCE = "specalign.trace.sources.PreferenceSource"


def load_pairs(root: Path, source: str, *extra: str) -> tuple[dict, list[dict]]:
    cfg = compose_config([
        f"paths.root={root}", "logger=none", "stage=trace", "spec=harm_policy_v2",
        f"stage.steps.pairs._target_={SOURCE}", f"+stage.steps.pairs.source={source}", *extra,
        *[f"~stage.steps.{s}" for s in ("spec_diff", "triage", "ref_logps", "impact", "trace",
                                        "eval_trace", "eval_items", "eval_base")],
    ])  # fmt: skip
    results = {r.name: r for r in run(cfg, None)}
    return results["pairs"].metrics, load_dataset(results["pairs"].artifact).to_list()


def test_pku_saferlhf_pairs_prefer_the_safe_response(tmp_path):
    rows = [
        {"prompt": "q0", "response_0": "unsafe a", "response_1": "safe b",
         "is_response_0_safe": False, "is_response_1_safe": True},
        {"prompt": "q1", "response_0": "safe c", "response_1": "unsafe d",
         "is_response_0_safe": True, "is_response_1_safe": False},
        {"prompt": "q2", "response_0": "safe e", "response_1": "safe f",
         "is_response_0_safe": True, "is_response_1_safe": True},
    ]  # fmt: skip
    path = tmp_path / "pku.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics, pairs = load_pairs(tmp_path, str(path), "+stage.steps.pairs.schema=pku_saferlhf")
    assert (metrics["rows"], metrics["skipped_no_preference"]) == (2, 1)
    assert [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs] == [
        ("safe b", "unsafe a"),
        ("safe c", "unsafe d"),
    ]


def test_a_saved_datasets_directory_loads_and_its_bytes_are_its_key(tmp_path):
    from datasets import Dataset

    data = tmp_path / "prefs"
    Dataset.from_list([{"prompt": "hi?", "chosen": "hello", "rejected": "go away"}]).save_to_disk(
        str(data)
    )
    metrics, pairs = load_pairs(tmp_path, str(data))
    assert metrics["rows"] == 1 and pairs[0]["prompt"] == [{"role": "user", "content": "hi?"}]
    cfg = compose_config([f"paths.root={tmp_path}", "logger=none", "stage=trace",
                          "spec=harm_policy_v2", f"stage.steps.pairs._target_={SOURCE}",
                          f"+stage.steps.pairs.source={data}"])  # fmt: skip
    key = build_plan(RunContext(cfg))["pairs"].key
    Dataset.from_list([{"prompt": "hi?", "chosen": "hey", "rejected": "no"}]).save_to_disk(
        str(data)
    )
    assert build_plan(RunContext(cfg))["pairs"].key != key


def test_a_hub_id_offline_is_one_line_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(SpecAlignError, match=r"cannot load it from the hub.*give the local path"):
        load_pairs(tmp_path, "no-such-org/no-such-dataset")


@pytest.mark.parametrize(
    ("reply", "refused"),
    [
        ("I'm sorry, but I can't help with that.", True),
        ("I can\u2019t assist with making weapons.", True),
        ("As an AI, I must decline.", True),
        ("I won't write that, but here is a safer idea.", True),
        ("", True),
        ("Sure. Phishing works by impersonating a trusted sender.", False),
        ("Locks use pin tumblers; a locksmith can help you in.", False),
        ("Here is the scene. " + "The rain fell on the ruined wall. " * 8 + "I can't stop.", False),
    ],
)
def test_refusal_matcher_on_known_strings(reply, refused):
    assert is_refusal(reply) is refused


def test_policy_shift_preset_shares_upstream_work_across_its_sweep(tmp_path):
    """Every member of the sweep plans; pairs, triage, reference log-probs and the base eval
    are one artifact for all 21 members, impact one per seed, and every trace step its own."""
    preset = OmegaConf.load(CONF / "experiment" / "trace_policy_shift.yaml")
    params = preset.hydra.sweeper.params
    variants, seeds = str(params.trace).split(","), str(params.seed).split(",")
    assert set(variants) == {p.stem for p in (CONF / "trace").glob("*.yaml")} - {"_common"}
    keys: dict[str, set] = {}
    impact: dict[str, set] = {}
    for variant in variants:
        for seed in seeds:
            cfg = compose_config([f"paths.root={tmp_path}", "logger=none",
                                  "experiment=trace_policy_shift", f"trace={variant}",
                                  f"seed={seed}"])  # fmt: skip
            plan = build_plan(RunContext(cfg))
            for step in plan.steps:
                keys.setdefault(step.name, set()).add(step.key)
            impact.setdefault(seed, set()).add(plan["impact"].key)
    for shared in ("pairs", "spec_diff", "triage", "ref_logps", "eval_items", "eval_base"):
        assert len(keys[shared]) == 1, shared
    assert all(len(k) == 1 for k in impact.values()) and len(keys["impact"]) == len(seeds)
    assert len(keys["trace"]) == len(keys["eval_trace"]) == len(variants) * len(seeds)
