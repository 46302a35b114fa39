"""The LLM interface inside the pipeline: annotator=llm on the tiny random backbone (whose
replies are junk, so every rule ends as a counted reject), the request cache across runs,
and dry-run estimates."""

from __future__ import annotations

import pytest

from specalign.app import run
from specalign.llm import BudgetExceededError
from specalign.llm.cache import RequestCache
from specalign.llm.factory import REQUEST_CACHE

TINY_LLM = (
    "stage=instances",
    "annotator=llm",
    "backbone=tiny_random",
    "synthesizer=local",
    "annotator.max_new_tokens=8",
    "annotator.max_attempts=2",
    "stage.steps.instances.count=2",
)


def test_llm_annotation_rejects_junk_counts_it_and_resumes_from_cache(cfg_factory, tmp_path):
    results = {r.name: r for r in run(cfg_factory(*TINY_LLM), tmp_path)}
    metrics = results["annotations"].metrics
    assert metrics["rules"] == 17
    assert metrics["rejects"] == 17 and metrics["retries"] == 17, metrics
    assert metrics["llm_calls"] == 34  # two attempts per rule, batched
    assert metrics["completion_tokens"] <= 34 * 8
    assert results["instances"].metrics["instances"] == 2  # the step still completed
    cached = len(RequestCache(tmp_path / "cache" / REQUEST_CACHE))
    assert cached == 34

    # a new key (three attempts) re-sends nothing already answered: only the third round
    again = {r.name: r for r in run(cfg_factory(*TINY_LLM, "annotator.max_attempts=3"), tmp_path)}
    assert not again["annotations"].cached
    assert again["annotations"].metrics["llm_calls"] == 17


def test_dry_run_estimates_llm_spend(cfg_factory, tmp_path, capsys):
    assert run(cfg_factory(*TINY_LLM, "dry_run=true"), tmp_path) == []
    out = capsys.readouterr().out
    assert "would spend: llm_calls=17, max_llm_calls=34" in out


def test_budget_stops_the_step_cleanly_and_a_rerun_continues(cfg_factory, tmp_path):
    with pytest.raises(BudgetExceededError, match="token budget spent"):
        run(cfg_factory(*TINY_LLM, "synthesizer.budget.max_tokens=1"), tmp_path)
    assert len(RequestCache(tmp_path / "cache" / REQUEST_CACHE)) == 17, "first round not kept"
    assert not list((tmp_path / "store").glob("annotations/*/manifest.json"))
    results = {r.name: r for r in run(cfg_factory(*TINY_LLM), tmp_path)}
    assert results["annotations"].metrics["llm_calls"] == 17  # only the second round is new


def test_generate_commits_each_chunk_so_a_crash_loses_at_most_one(tmp_path):
    """A backend that dies on its third chunk: the first two chunks are already cached."""
    from specalign.llm import LLM, Completion

    class DiesOnThirdChunk(LLM):
        commit_every = 4

        def identity(self):
            return {"backend": "test"}

        def _generate(self, chats, sampling):
            if self.calls >= 8:
                raise RuntimeError("killed")
            return [Completion(text=c[-1]["content"].upper()) for c in chats]

    cache = RequestCache(tmp_path / "r.sqlite")
    chats = [[{"role": "user", "content": f"q{i}"}] for i in range(10)]
    with pytest.raises(RuntimeError, match="killed"):
        DiesOnThirdChunk(cache=cache).generate(chats)
    assert len(cache) == 8
