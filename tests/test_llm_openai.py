"""The OpenAI-compatible backend against a local fake server that injects faults, plus the
vLLM backend's missing-package message. Everything binds 127.0.0.1; the whole file runs in
a few seconds (tiny backoffs, 0.5 s client timeout)."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import pytest
from fake_openai_server import FakeOpenAIServer
from hydra.utils import instantiate
from omegaconf import OmegaConf

from specalign.errors import SpecAlignError
from specalign.llm.base import Chat
from specalign.llm.cache import RequestCache
from specalign.llm.openai_backend import OpenAIBackend
from specalign.llm.rate_limit import RateLimiter, full_jitter, parse_retry_after
from specalign.llm.vllm_backend import VLLMBackend

CONF = Path(__file__).resolve().parent.parent / "conf" / "synthesizer"
KEY_ENV = "SPECALIGN_TEST_API_KEY"
SECRET = "sk-test-DO-NOT-LEAK-4f9a2c"
SEED = 7


def make_chats(n: int) -> list[Chat]:
    return [
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": f"question {i}"}]
        for i in range(n)
    ]


def make_backend(server: FakeOpenAIServer, **overrides: object) -> OpenAIBackend:
    settings: dict = {
        "model": "fake-model",
        "base_url": server.base_url,
        "api_key_env": KEY_ENV,
        "max_concurrency": 8,
        "requests_per_minute": 60_000,
        "timeout_s": 0.5,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "sampling": {"seed": SEED, "max_new_tokens": 16},
        **overrides,
    }
    return OpenAIBackend(**settings)


def test_faulty_server_every_chat_answered_once_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    caplog.set_level(logging.DEBUG)
    chats = make_chats(40)
    cache = RequestCache(tmp_path / "requests.sqlite")
    with FakeOpenAIServer(fault_every=5) as server:
        backend = make_backend(server, cache=cache)
        results = backend.generate(chats)

        assert [r.text for r in results] == [f"echo: question {i} #seed{SEED}" for i in range(40)]
        assert all(r.finish_reason == "stop" and not r.cached for r in results)
        assert all(r.prompt_tokens > 0 and r.completion_tokens > 0 for r in results)
        faulted = server.faulted()
        assert len(faulted) >= 8
        assert backend.retries >= len(faulted)
        assert set(backend.retry_reasons) >= {"rate_limit", "server_error", "timeout", "malformed"}
        assert backend.failures == 0
        assert server.successes() == {f"question {i}": 1 for i in range(40)}  # none twice/lost
        assert {r.authorization for r in server.received} == {f"Bearer {SECRET}"}
        assert backend.budget.completion_tokens == sum(r.completion_tokens for r in results)

        sent = len(server.received)
        again = make_backend(server, cache=cache).generate(chats)
        assert len(server.received) == sent  # a re-run with the same cache sends nothing
        assert [r.text for r in again] == [r.text for r in results]
        assert all(r.cached for r in again)

    assert SECRET not in repr(backend)
    assert SECRET not in str(vars(backend))
    assert SECRET not in caplog.text
    for path in tmp_path.glob("requests.sqlite*"):  # the database and its WAL
        assert SECRET.encode() not in path.read_bytes()


def test_concurrency_limit_is_respected() -> None:
    with FakeOpenAIServer(fault_every=0, delay_s=0.05) as server:
        results = make_backend(server, max_concurrency=3).generate(make_chats(24))
    assert len(results) == 24 and all(r.finish_reason == "stop" for r in results)
    assert 1 < server.max_in_flight <= 3


def test_permanent_failure_gives_uncached_error_completions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    cache = RequestCache(tmp_path / "requests.sqlite")
    with FakeOpenAIServer(fault_every=1, faults=("500",)) as server:
        backend = make_backend(server, cache=cache, max_retries=2)
        results = backend.generate(make_chats(3))
        assert [r.finish_reason for r in results] == ["error"] * 3
        assert all(r.text == "" for r in results)
        assert backend.failures == 3
        assert backend.retries == 6 and backend.retry_reasons == {"server_error": 6}
        assert len(server.received) == 9  # 1 + max_retries attempts each
        assert len(cache) == 0  # errors are not cached: the next run asks again
        backend.generate(make_chats(3))
        assert len(server.received) == 18
    assert {r.authorization for r in server.received} == {None}  # no key: no header


def test_unauthorized_fails_fast_without_leaking_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    with FakeOpenAIServer(fault_every=1, faults=("401",)) as server:
        with pytest.raises(SpecAlignError, match=KEY_ENV) as error:
            make_backend(server).generate(make_chats(30))
        assert len(server.received) < 30  # the rest were cancelled, not retried
    assert SECRET not in str(error.value)


def test_bad_request_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with FakeOpenAIServer(fault_every=2, faults=("400",)) as server:
        backend = make_backend(server, max_concurrency=1)
        results = backend.generate(make_chats(2))
    assert [r.finish_reason for r in results] == ["stop", "error"]
    assert backend.retries == 0 and backend.failures == 1


def test_identity_names_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    backend = OpenAIBackend(model="m", base_url="http://127.0.0.1:1/v1/", api_key_env=KEY_ENV)
    assert backend.identity() == {
        "backend": "openai",
        "base_url": "http://127.0.0.1:1/v1",
        "model": "m",
    }


def test_rate_limiter_paces_after_a_one_second_burst() -> None:
    limiter = RateLimiter(per_minute=600)  # 10 a second, bursts of 10
    delays = [limiter.reserve() for _ in range(15)]
    assert delays[:10] == [0.0] * 10
    assert delays[10:] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5], abs=0.01)


def test_backoff_helpers() -> None:
    assert all(0 <= full_jitter(attempt, 1.0, 5.0) <= min(5.0, 2**attempt) for attempt in range(8))
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None


def test_yamls_instantiate(tmp_path: Path) -> None:
    cache = RequestCache(tmp_path / "requests.sqlite")
    openai_cfg = OmegaConf.load(CONF / "openai.yaml")
    openai_cfg.model = "gpt-x"
    backend = instantiate(openai_cfg, cache=cache, _convert_="all")
    assert isinstance(backend, OpenAIBackend) and backend.max_retries == 6
    assert backend.default_sampling["top_p"] == 0.95
    vllm = instantiate(OmegaConf.load(CONF / "vllm.yaml"), model="org/m", _convert_="all")
    assert isinstance(vllm, VLLMBackend) and vllm.identity()["model"] == "org/m"


def test_vllm_without_vllm_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # behave as if vLLM were not installed
    backend = VLLMBackend(model="org/m")
    with pytest.raises(SpecAlignError, match=r"synthesizer=vllm needs vLLM: pip install"):
        backend.generate(make_chats(1))


def test_408_a_long_retry_after_and_a_dropped_connection_are_retried_promptly() -> None:
    started = time.monotonic()
    with FakeOpenAIServer(fault_every=3, faults=("408", "429_long", "drop")) as server:
        backend = make_backend(server)
        results = backend.generate(make_chats(12))
    assert [r.text for r in results] == [f"echo: question {i} #seed{SEED}" for i in range(12)]
    assert set(backend.retry_reasons) >= {"request_timeout", "rate_limit", "connection"}
    assert server.successes() == {f"question {i}": 1 for i in range(12)}
    assert time.monotonic() - started < 30  # Retry-After: 3600 was capped at backoff_max_s


def test_a_refusal_is_counted_not_retried_as_malformed() -> None:
    with FakeOpenAIServer(fault_every=2, faults=("refusal",)) as server:
        backend = make_backend(server)
        results = backend.generate(make_chats(6))
    refused = [r for r in results if r.finish_reason == "refusal"]
    assert len(refused) == 3 == backend.refusals and refused[0].text == "I can't help with that."
    assert len(server.received) == 6 and backend.retries == 0  # an answer, not a fault


def test_the_rate_limit_holds_across_cache_chunks() -> None:
    """120 requests a minute (2 a second, bursts of 2) over 3 chunks of 2: one bucket for the
    run, so the 6 requests span at least 2 s (a bucket per chunk would send them at once)."""
    with FakeOpenAIServer(fault_every=0) as server:
        backend = make_backend(server, requests_per_minute=120)
        backend.commit_every = 2
        limiter = backend.limiter
        backend.generate(make_chats(6))
        arrivals = sorted(r.at for r in server.received)
    assert backend.limiter is limiter and len(arrivals) == 6
    assert arrivals[-1] - arrivals[0] >= 1.8
    backend.close()


@pytest.fixture
def real_server(tmp_path: Path):
    """`transformers serve` (transformers' own OpenAI-compatible server, which nobody here
    wrote) on loopback, serving the tiny random model from a local directory."""
    import socket
    import subprocess

    import httpx

    from specalign.backbone.tiny_random import TinyRandomBackbone

    model = TinyRandomBackbone(name="tiny_random", cache_dir=tmp_path / "cache").model_path
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serve = [sys.executable, "-m", "transformers.cli.transformers", "serve", model]
    serve += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    log = tmp_path / "serve.log"  # what the server said, for a failure's message
    proc = subprocess.Popen(serve, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.5)
        yield f"{url}/v1", model
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_against_transformers_serve(real_server, tmp_path: Path) -> None:
    base_url, model = real_server
    cache = RequestCache(tmp_path / "requests.sqlite")
    settings = {"model": model, "base_url": base_url, "max_concurrency": 4, "timeout_s": 60,
                "max_retries": 2}  # fmt: skip
    backend = OpenAIBackend(**settings, cache=cache, sampling={"max_new_tokens": 8, "seed": 1})
    results = backend.generate(make_chats(10))
    assert all(r.finish_reason in ("stop", "length") for r in results), results
    assert all(r.completion_tokens > 0 and r.prompt_tokens > 0 for r in results)
    assert backend.calls == 10 and backend.failures == 0
    again = OpenAIBackend(**settings, cache=cache, sampling={"max_new_tokens": 8, "seed": 1})
    assert [r.text for r in again.generate(make_chats(10))] == [r.text for r in results]
    assert again.calls == 0  # every answer came from the cache
    backend.close()


SCHEMA = {"type": "object", "properties": {"answer": {"enum": ["Yes", "No"]}},
          "required": ["answer"], "additionalProperties": False}  # fmt: skip


def test_a_schema_goes_as_response_format_and_a_server_without_it_falls_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with FakeOpenAIServer(fault_every=0) as server:
        backend = make_backend(server)
        backend.generate(make_chats(2), schema=SCHEMA)
        sent = [r.response_format for r in server.received]
        expected = {"name": "reply", "schema": SCHEMA, "strict": True}
        assert sent == [{"type": "json_schema", "json_schema": expected}] * 2
        backend.generate(make_chats(1))  # free text: no response_format
        assert server.received[-1].response_format is None and backend.constrains
        backend.close()
    with FakeOpenAIServer(fault_every=0, accepts_schema=False) as server:
        backend = make_backend(server)
        results = backend.generate(make_chats(3), schema=SCHEMA)
        assert all(r.finish_reason == "stop" for r in results) and backend.failures == 0
        assert backend.schema_unsupported and not backend.constrains  # parse + retry from now
        assert "rejected response_format" in caplog.text
        backend.close()
    with FakeOpenAIServer(fault_every=0) as server:
        backend = make_backend(server, structured_outputs="none")
        backend.generate(make_chats(1), schema=SCHEMA)
        assert server.received[0].response_format is None and not backend.constrains
        backend.close()


def test_vllm_decodes_under_the_schema_with_structured_outputs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """vLLM is not installed here: a stand-in module with its parameter class."""
    import types

    from specalign.llm.vllm_backend import structured_outputs

    class StructuredOutputsParams:
        def __init__(self, **kwargs: object) -> None:
            self.kwargs = kwargs

    module = types.ModuleType("vllm.sampling_params")
    module.StructuredOutputsParams = StructuredOutputsParams  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", types.ModuleType("vllm"))
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", module)
    assert structured_outputs(None) == {}
    params = structured_outputs(SCHEMA)["structured_outputs"]
    assert params.kwargs == {"json": SCHEMA}
