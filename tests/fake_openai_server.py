"""An in-process OpenAI-compatible server for the remote backend's tests (127.0.0.1 only).

It answers `/v1/chat/completions` deterministically ("echo: <last user message> #seed<seed>")
and injects faults on a fixed schedule keyed by a request counter (every `fault_every`-th
request, cycling through `faults`), so retry logic is exercised the same way on every run.
Every request is recorded (messages, fault, auth header) so tests can prove that no chat was
answered twice and none was lost. Faults that stall (timeout) wait on an event that `close()`
sets, so shutting down never waits for them.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = ("429", "500", "timeout", "malformed")


@dataclass(frozen=True)
class Received:
    """One request as the server saw it; `fault` is None when it was answered normally."""

    messages: list[dict[str, str]]
    seed: int | None
    fault: str | None
    authorization: str | None
    at: float = 0.0  # time.monotonic() on arrival
    response_format: dict[str, Any] | None = None

    @property
    def last_user(self) -> str:
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "user")


class FakeOpenAIServer:
    """Context manager: `with FakeOpenAIServer() as server: ... server.base_url ...`.

    `fault_every=5` faults requests 5, 10, 15, ... (1-based); 0 disables faults and 1 faults
    every request (with `faults=("500",)`: a permanently broken server). A fault named by an
    HTTP status ("401", "404", ...) answers that status with an error body that echoes the
    Authorization header, as some providers do, to test that clients redact it.
    """

    def __init__(
        self,
        *,
        fault_every: int = 5,
        faults: tuple[str, ...] = FAULTS,
        delay_s: float = 0.0,
        stall_s: float = 1.5,
        accepts_schema: bool = True,
    ) -> None:
        self.accepts_schema = accepts_schema  # False: 400 for response_format, as old servers
        self.fault_every = fault_every
        self.faults = faults
        self.delay_s = delay_s
        self.stall_s = stall_s
        self.received: list[Received] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAIServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def successes(self) -> Counter[str]:
        """How many times each last user message was answered normally."""
        with self.lock:
            return Counter(r.last_user for r in self.received if r.fault is None)

    def faulted(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.fault is not None]

    def _admit(self, body: dict[str, Any], authorization: str | None) -> tuple[int, str | None]:
        """Record the request, count it in flight, decide its fault from the counter n."""
        with self.lock:
            n = len(self.received) + 1
            fault = None
            if self.fault_every and n % self.fault_every == 0:
                fault = self.faults[(n // self.fault_every - 1) % len(self.faults)]
            self.received.append(
                Received(
                    body.get("messages", []),
                    body.get("seed"),
                    fault,
                    authorization,
                    time.monotonic(),
                    body.get("response_format"),
                )
            )
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return n, fault

    def _leave(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def _answer(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body["messages"]
        user = next(m["content"] for m in reversed(messages) if m["role"] == "user")
        text = f"echo: {user} #seed{body.get('seed')}"
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": sum(len(m["content"].split()) for m in messages),
                "completion_tokens": len(text.split()),
            },
        }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                pass

            def send(self, status: int, payload: bytes, headers: dict[str, str] | None = None):
                try:
                    self.send_response(status)
                    headers = {"Content-Type": "application/json", **(headers or {})}
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up
                    pass

            def do_POST(self) -> None:
                if self.path != "/v1/chat/completions":
                    self.send(404, b'{"error": "no such route"}')
                    return
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw)
                authorization = self.headers.get("Authorization")
                n, fault = server._admit(body, authorization)
                try:
                    self.respond(n, body, fault, authorization)
                finally:
                    server._leave()

            def respond(self, n: int, body: dict[str, Any], fault: str | None, auth: str | None):
                if "response_format" in body and not server.accepts_schema:
                    self.send(400, b'{"error": "response_format is not supported"}')
                elif fault == "timeout":
                    server.stopping.wait(server.stall_s)  # outlive the client, then hang up
                elif fault == "429":
                    self.send(429, b'{"error": "slow down"}', {"Retry-After": "0"})
                elif fault == "429_long":  # a server asking for an hour's pause
                    self.send(429, b'{"error": "slow down"}', {"Retry-After": "3600"})
                elif fault == "drop":  # hang up without an answer (a transport error)
                    self.close_connection = True
                    self.connection.shutdown(2)
                elif fault == "refusal":  # the model declines: content null, a reason
                    answer = server._answer(body)
                    answer["choices"][0]["message"] = {
                        "role": "assistant",
                        "content": None,
                        "refusal": "I can't help with that.",
                    }
                    self.send(200, json.dumps(answer).encode())
                elif fault == "malformed":
                    # Alternate a truncated body with valid JSON that lacks the content.
                    bad = b'{"choices": [{"mess' if n % 2 else b'{"choices": []}'
                    self.send(200, bad)
                elif fault is not None:
                    error = {"error": {"message": f"bad request, header was {auth}"}}
                    self.send(int(fault), json.dumps(error).encode())
                else:
                    if server.delay_s:
                        time.sleep(server.delay_s)
                    self.send(200, json.dumps(server._answer(body)).encode())

        return Handler
