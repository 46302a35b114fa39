"""Structured output over any LLM, and the request cache shared by concurrent processes."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

from specalign.llm.cache import RequestCache
from specalign.llm.structured import generate_json


class Scripted:
    """Replies per request from a per-chat script (keyed by the first user message)."""

    def __init__(self, scripts: dict[str, list[str]]) -> None:
        self.scripts = {k: list(v) for k, v in scripts.items()}
        self.batches: list[int] = []
        self.last_chats: list[list[dict[str, str]]] = []

    def generate(self, chats, sampling=None):
        self.batches.append(len(chats))
        self.last_chats = chats
        return [self.scripts[chat[0]["content"]].pop(0) for chat in chats]


def need_answer(data):
    if not isinstance(data.get("answer"), int):
        raise ValueError("`answer` must be an integer")
    return data["answer"]


def test_only_invalid_replies_are_retried_with_the_error_and_rejects_counted():
    llm = Scripted(
        {
            "a": ['{"answer": 1}'],
            "b": ["no json", 'Here: {"answer": 2}'],
            "c": ['{"answer": "x"}', "junk", "still junk"],
        }
    )
    chats = [[{"role": "user", "content": k}] for k in ("a", "b", "c")]
    values, stats = generate_json(llm, chats, need_answer, max_attempts=3)
    assert values == [1, 2, None]
    assert llm.batches == [3, 2, 1], "each round must resend only the invalid requests"
    assert stats.retries == 3 and stats.rejects == [2]
    # the last round resent only "c", carrying each earlier reply and its validation error
    (conversation,) = llm.last_chats
    assert conversation[2]["content"].startswith("Invalid: `answer` must be an integer")
    assert conversation[4]["content"].startswith("Invalid: no JSON object")
    assert stats.errors == {2: "no JSON object in the reply"}


def write_entries(path: str, worker: int, journal: str = "wal") -> None:
    cache = RequestCache(path, journal_mode=journal)
    for batch in range(20):
        cache.put_many({f"{worker}-{batch}-{i}": {"text": "x"} for i in range(10)})


@pytest.mark.parametrize("journal", ["wal", "delete"])  # delete: for network filesystems
def test_two_processes_share_the_request_cache(tmp_path: Path, journal: str):
    path = str(tmp_path / "requests.sqlite")
    ctx = mp.get_context("spawn")
    workers = [ctx.Process(target=write_entries, args=(path, w, journal)) for w in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    cache = RequestCache(path, journal_mode=journal)
    assert len(cache) == 2 * 20 * 10
    assert cache.connect().execute("PRAGMA journal_mode").fetchone()[0] == journal


class Flaky:
    """Fails (an "error" completion: the transport gave up) on the first try of each chat."""

    def __init__(self) -> None:
        self.sent: list[list[dict[str, str]]] = []
        self.seen: set[str] = set()

    def generate(self, chats, sampling=None):
        from specalign.llm.base import Completion

        out = []
        for chat in chats:
            self.sent.append(chat)
            first = chat[-1]["content"] not in self.seen
            self.seen.add(chat[-1]["content"])
            out.append(
                Completion(text="", finish_reason="error") if first else Completion(text='{"a": 1}')
            )
        return out


def test_a_transport_failure_resends_the_same_request():
    """No empty assistant turn and no "Invalid: ..." message: the request had no answer."""
    llm = Flaky()
    chats = [[{"role": "user", "content": "give me JSON"}]]
    values, stats = generate_json(llm, chats, lambda d: d["a"], max_attempts=3)
    assert values == [1] and stats.retries == 1 and not stats.rejects
    assert llm.sent == [chats[0], chats[0]]
