"""Progress of long work: a log line every few seconds where there is no terminal (SLURM
logs, CI), counting requests done out of the total with the cache hits, and training steps."""

from __future__ import annotations

import logging

from eval_fakes import FunctionLLM

from specalign.llm.cache import RequestCache
from specalign.progress import Progress


def test_without_a_terminal_progress_is_periodic_log_lines(monkeypatch, caplog):
    monkeypatch.setenv("SPECALIGN_PROGRESS", "log")
    caplog.set_level(logging.INFO, logger="specalign.progress")
    with Progress(10, "documents", "requests", every_s=0) as bar:
        for _ in range(4):
            bar.update(1, note="3 from the cache")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "documents: 1/10 requests (10%), 3 from the cache, ~0 s left"
    assert lines[3].startswith("documents: 4/10 requests (40%)")
    monkeypatch.setenv("SPECALIGN_PROGRESS", "off")
    caplog.clear()
    with Progress(10, "quiet", every_s=0) as bar:
        bar.update(5)
    assert not caplog.records


def test_generation_counts_cache_hits_as_done(monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("SPECALIGN_PROGRESS", "log")
    monkeypatch.setenv("SPECALIGN_PROGRESS_EVERY_S", "0")
    caplog.set_level(logging.INFO, logger="specalign.progress")
    llm = FunctionLLM(reply=lambda chat: chat[-1]["content"].upper())
    llm.cache = RequestCache(tmp_path / "requests.sqlite")
    chats = [[{"role": "user", "content": f"q{n}"}] for n in range(6)]
    llm.generate(chats[:2], desc="ideas")
    caplog.clear()
    answers = llm.generate(chats, desc="ideas")
    assert [a.text for a in answers] == [f"Q{n}" for n in range(6)]
    lines = [r.getMessage() for r in caplog.records]
    assert lines and lines[-1].startswith("ideas: 6/6 requests (100%), 2 from the cache")
    caplog.clear()
    llm.generate(chats, desc="ideas")  # all cached: nothing to report
    assert not caplog.records
