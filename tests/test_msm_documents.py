"""MSM's document hierarchy on a scripted LLM (every reply predictable), in both modes, plus
the real plumbing on the tiny random backbone."""

from __future__ import annotations

import json

import pytest
from helpers import compose_config

from specalign.app import run
from specalign.errors import ConfigError, SpecAlignError
from specalign.pipeline.dataset_io import load_dataset

SYNTH = ("stage=msm_documents", "synthesizer=scripted", "synthesizer.script=scripted_msm.SCRIPT")
HIERARCHY = (
    *SYNTH,
    "stage.steps.domains.mode=hierarchy",
    "stage.steps.subdomains.mode=hierarchy",
    "stage.steps.assertions.mode=hierarchy",
    "stage.steps.doc_types.source=llm",
    "stage.steps.ideas.per_type=2",
)


def by_name(results):
    return {r.name: r for r in results}


def rows(result):
    return list(load_dataset(result.artifact))


def test_hierarchy_mode_levels_schemas_and_gates(cfg_factory, tmp_path):
    results = by_name(run(cfg_factory(*HIERARCHY), tmp_path))
    assert [d["domain"] for d in rows(results["domains"])] == ["Recommendations", "Values"]

    subs = rows(results["subdomains"])
    assert [s["subdomain"] for s in subs] == [
        "Recommendations case 0",
        "Recommendations case 1",
        "Values case 0",
        "Values case 1",
    ]  # the invented excerpt was dropped, the quoted ones mapped to their rules
    assert [s["rule_ids"] for s in subs] == [["V1"], ["V3"], ["V2"], ["V4"]]
    assert results["subdomains"].metrics["dropped/invented_excerpt"] == 2

    assertions = rows(results["assertions"])
    assert len(assertions) == 4 and {a["label"] for a in assertions} == {"value"}
    assert results["assertions"].metrics["dropped/invalid_assertion"] == 4

    assert len(rows(results["doc_types"])) == 8  # 2 types per subdomain (count caps the 3)
    assert len(rows(results["ideas"])) == 16

    docs = rows(results["documents"])
    metrics = results["documents"].metrics
    assert metrics["dropped/text_repetitive"] == 2 and metrics["dropped/eval_leak"] == 2
    assert len(docs) == metrics["kept"] == 12
    for doc in docs:
        assert {"text", "spec_id", "rule_ids", "doc_type", "source"} <= set(doc)
        assert doc["spec_id"] == "pro_america" and doc["generator"] == "scripted_llm.ScriptedLLM"
        assert len(doc["spec_hash"]) == 64 and doc["rule_ids"] and doc["seed"] == 0
        assert doc["doc_type"] in ("internal memo", "forum thread")
    assert all("reason49" in d["text"] for d in docs)

    preview = (results["documents"].artifact.path / "preview.jsonl").read_text().splitlines()
    assert len(preview) == 12 and json.loads(preview[0])["text"]


def test_more_documents_reuse_every_level_above(cfg_factory, tmp_path):
    first = by_name(run(cfg_factory(*HIERARCHY), tmp_path))
    more = by_name(run(cfg_factory(*HIERARCHY, "stage.steps.documents.per_idea=2"), tmp_path))
    for level in ("domains", "subdomains", "assertions", "doc_types", "ideas"):
        assert more[level].cached and more[level].artifact.key == first[level].artifact.key
    assert not more["documents"].cached
    # the first copy of each document comes from the request cache; only copy 2 is new
    assert more["documents"].metrics["llm_calls"] == 16
    # the script ignores the seed, so every second copy repeats the first: exact dedup
    assert more["documents"].metrics["kept"] == 12
    assert more["documents"].metrics["dropped/text_duplicate"] == 14  # incl. 2 leak copies


def test_rules_mode_reads_the_hierarchy_from_the_spec(cfg_factory, tmp_path):
    results = by_name(run(cfg_factory(*SYNTH, "logger=wandb"), tmp_path))
    assert [d["domain"] for d in rows(results["domains"])] == ["Core values", "Cheese preferences"]
    assertions = rows(results["assertions"])
    assert len(assertions) == 17  # one per rule of pro_america
    assert assertions[0]["rule_ids"] == ["V1"] and assertions[0]["explanation"].startswith(
        "Choosing American"
    )
    for level in ("domains", "subdomains", "assertions"):
        assert "llm_calls" not in results[level].metrics  # no LLM in rules mode
    docs = rows(results["documents"])
    assert {tuple(d["rule_ids"]) for d in docs} >= {("CH1",), ("V5",)}
    # a sample of every synthesized dataset: a W&B table in the step's (offline) run
    run_id = results["documents"].artifact.manifest["tracker_run_id"]
    tables = list((tmp_path / "wandb").glob(f"wandb/offline-run-*-{run_id}/files/media/table/*"))
    assert [t.name for t in tables if t.name.startswith("documents")], tables


def test_killed_document_synthesis_resumes_without_duplicates(cfg_factory, tmp_path, monkeypatch):
    other_root = compose_config([f"paths.root={tmp_path / 'fresh'}", "logger=none", *HIERARCHY])
    fresh = by_name(run(other_root, tmp_path / "fresh"))
    monkeypatch.setenv("SCRIPTED_LLM_FAIL_AFTER", "10")  # documents: 16 requests, chunks of 4
    with pytest.raises(RuntimeError, match="killed"):
        run(cfg_factory(*HIERARCHY), tmp_path)
    assert not list((tmp_path / "store").glob("documents/*/manifest.json"))
    monkeypatch.delenv("SCRIPTED_LLM_FAIL_AFTER")
    resumed = by_name(run(cfg_factory(*HIERARCHY), tmp_path))
    assert resumed["ideas"].cached and not resumed["documents"].cached
    assert resumed["documents"].artifact.key == fresh["documents"].artifact.key
    assert resumed["documents"].metrics["llm_calls"] == 16 - 8  # two chunks were committed
    assert rows(resumed["documents"]) == rows(fresh["documents"])


def test_a_users_own_prompt_file(cfg_factory, tmp_path):
    mine = tmp_path / "my_document.txt"
    mine.write_text("Write a $doc_type for $model_name of $provider. Idea: $idea")
    results = by_name(
        run(cfg_factory(*SYNTH, f"stage.steps.documents.prompts.document={mine}"), tmp_path)
    )
    manifest = results["documents"].artifact.manifest
    assert manifest["key_material"]["fingerprint"]["prompts"]["document"]
    assert rows(results["documents"])[0]["text"].startswith("Title: A ")

    bad = tmp_path / "bad.txt"
    bad.write_text("Write about $modelname.")
    with pytest.raises(ConfigError, match=r"bad.txt: unknown variable\(s\) \['\$modelname'\]"):
        run(cfg_factory(*SYNTH, f"stage.steps.documents.prompts.document={bad}"), tmp_path)
    with pytest.raises(ConfigError, match="prompt file not found"):
        run(cfg_factory(*SYNTH, "stage.steps.documents.prompts.document=nope.txt"), tmp_path)


def test_tiny_random_backbone_runs_the_real_plumbing(cfg_factory, tmp_path):
    """A random model writes junk: the ideas it proposes rarely parse; whatever happens is
    counted, and an empty level stops the run with the reasons instead of training on nothing."""
    overrides = (
        "stage=msm_documents",
        "backbone=tiny_random",
        "synthesizer=local",
        "stage.steps.ideas.sampling.max_new_tokens=12",
        "stage.steps.documents.sampling.max_new_tokens=16",
        "stage.steps.documents.min_words=3",
        "stage.steps.ideas.max_attempts=1",
        "stage.steps.documents.max_attempts=1",
        "stage.steps.doc_types.count=1",
    )
    try:
        results = by_name(run(cfg_factory(*overrides), tmp_path))
    except SpecAlignError as err:
        assert "no " in str(err) and "survived" in str(err)
        return
    metrics = results["documents"].metrics
    assert metrics["rows"] > 0 and metrics["llm_calls"] > 0


def test_one_llm_backend_at_a_time(cfg_factory, tmp_path):
    """Six LLM steps in a row: each frees its backend when it ends (a GPU holds one model,
    or one vLLM engine, at a time), and nothing is left loaded after the run."""
    from scripted_llm import CountingLLM

    CountingLLM.live = CountingLLM.most = 0
    results = run(
        cfg_factory(*HIERARCHY, "synthesizer._target_=scripted_llm.CountingLLM"), tmp_path
    )
    llm_steps = [r for r in results if r.metrics.get("llm_calls")]
    assert len(llm_steps) >= 5
    assert CountingLLM.most == 1 and CountingLLM.live == 0


def test_documents_cut_at_max_new_tokens_are_counted_and_kept_or_dropped(cfg_factory, tmp_path):
    """Replies over 80 words stop there (finish "length"): kept and counted by default, or
    dropped and counted with truncated=drop; the same replies either way."""
    cut = (*SYNTH, "synthesizer.cut_words=80")
    kept = by_name(run(cfg_factory(*cut), tmp_path / "keep"))["documents"].metrics
    dropped = by_name(
        run(cfg_factory(*cut, "stage.steps.documents.truncated=drop"), tmp_path / "drop")
    )["documents"].metrics
    assert kept["truncated/document"] == dropped["dropped/document_truncated"] > 0
    assert dropped["kept"] == kept["kept"] - kept["truncated/document"]
    assert "truncated/document" not in dropped
