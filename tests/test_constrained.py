"""Structured requests under constrained decoding, on the tiny random backbone.

The random model writes junk, so without constraints (almost) no reply parses: that count
is measured next to the constrained one, which must be every reply, for each kind of
structured request the pipeline sends. The kinds use the pipeline's own schema builders
and parsers (with small bounds: a random model fills a string to its maximum length).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from specalign.llm import schemas
from specalign.llm.base import LLM, Completion
from specalign.llm.cache import RequestCache
from specalign.llm.hf_backend import HFBackend
from specalign.llm.structured import generate_parsed, json_object
from specalign.spec.annotate import annotation_schema, validate
from specalign.synth.exchanges import parse_plan, plan_schema
from specalign.synth.judge import SCALE, YES_NO, Judge, pick_option
from specalign.synth.replies import parse_list, parse_objects

RULES = ["R1", "R2", "R3"]
LABELS = ["behavior", "value"]
SAMPLING = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 160, "seed": 3}
N = 3


def assertion(obj: dict[str, Any]) -> dict[str, Any]:
    if obj.get("label") not in LABELS or not str(obj.get("assertion", "")).strip():
        raise ValueError("bad assertion")
    return obj


def subdomain(obj: dict[str, Any]) -> dict[str, Any]:
    if not all(str(obj.get(k, "")).strip() for k in ("name", "context", "excerpt")):
        raise ValueError("empty field")
    return obj


KINDS: dict[str, tuple[dict[str, Any], Callable[[str], Any]]] = {
    "annotation": (annotation_schema(), lambda t: validate(json_object(t))),
    "list (domains, doc_types)": (
        schemas.items(schemas.text(2), 3),
        lambda t: parse_list(t, max_items=3, max_words=2),
    ),
    "subdomains": (
        schemas.items(
            schemas.record(name=schemas.text(1), context=schemas.text(1), excerpt=schemas.text(1)),
            2,
        ),
        lambda t: parse_objects(t, subdomain, max_items=2),
    ),
    "assertions": (
        schemas.items(
            schemas.record(
                assertion=schemas.text(1),
                name=schemas.text(1),
                explanation=schemas.text(1),
                label=schemas.one_of(LABELS),
            ),
            2,
        ),
        lambda t: parse_objects(t, assertion, max_items=2),
    ),
    "planner": (plan_schema(RULES, 3), lambda t: parse_plan(t, set(RULES), 1, None)),
    "judge yes/no": (schemas.answer(YES_NO), lambda t: pick_option(t, YES_NO)),
    "judge 0-10": (schemas.answer(SCALE), lambda t: pick_option(t, SCALE)),
}


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Any:
    conf = OmegaConf.load("conf/backbone/tiny_random.yaml")
    return instantiate(conf, cache_dir=tmp_path_factory.mktemp("cache"), tie_word_embeddings=False)


def chats(kind: str) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"Reply in JSON ({kind}), case {i}."}] for i in range(N)]


def valid_replies(llm: LLM, kind: str) -> int:
    schema, parse = KINDS[kind]
    values, stats = generate_parsed(llm, chats(kind), parse, max_attempts=1, sampling=SAMPLING,
                                    schema=schema)  # fmt: skip
    assert stats.constrained == (N if llm.constrains else 0)
    return sum(v is not None for v in values)


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_structured_request_kind_is_valid_when_constrained(backbone: Any, kind: str):
    constrained = HFBackend(backbone=backbone, batch_size=N)
    plain = HFBackend(backbone=backbone, batch_size=N, constrained_decoding="none")
    plain.model, plain.tokenizer = constrained.model, constrained.tokenizer
    unconstrained_valid = valid_replies(plain, kind)
    assert valid_replies(constrained, kind) == N
    assert unconstrained_valid < N, "the random model parses unconstrained: check is vacuous"


def test_the_enum_holds_and_xgrammar_agrees(backbone: Any):
    """Both engines keep the planner to the instance's ids; each reply parses."""
    pytest.importorskip("xgrammar")
    llguidance = HFBackend(backbone=backbone, batch_size=N)
    xgrammar = HFBackend(backbone=backbone, batch_size=N, constrained_decoding="xgrammar")
    xgrammar.model, xgrammar.tokenizer = llguidance.model, llguidance.tokenizer
    for llm in (llguidance, xgrammar):
        replies = llm.generate(chats("planner"), SAMPLING, schema=plan_schema(["R2"], 3))
        assert [json.loads(r.text)["target_rule"] for r in replies] == ["R2"] * N


class Recording(LLM):
    """Answers `{"answer": "Yes"}` and remembers what reached the backend."""

    def __init__(self, cache: RequestCache) -> None:
        super().__init__(cache=cache)
        self.sent: list[dict[str, Any]] = []

    def identity(self) -> dict[str, Any]:
        return {"backend": "recording"}

    @property
    def constrains(self) -> bool:
        return True

    def _generate(self, chats: list[Any], sampling: dict[str, Any]) -> list[Completion]:
        self.sent += [sampling] * len(chats)
        return [Completion(text='{"answer": "Yes"}') for _ in chats]


def test_the_schema_keys_the_request_and_each_group_carries_its_own(tmp_path: Path):
    llm = Recording(RequestCache(tmp_path / "requests.sqlite"))
    chat = [{"role": "user", "content": "Comply?"}]
    yes_no, scale = schemas.answer(YES_NO), schemas.answer(SCALE)
    llm.generate([chat, chat, chat], schema=[yes_no, scale, None])
    assert llm.calls == 3  # one chat, three schemas: three requests, three keys
    assert [s.get("schema") for s in llm.sent] == [yes_no, scale, None]
    llm.generate([chat], schema=yes_no)
    assert llm.calls == 3  # the same chat and schema: from the cache
    llm.generate([chat], schema=schemas.answer(["Yes", "No", "Unsure"]))
    assert llm.calls == 4  # a changed schema asks again


def test_a_generating_judge_sends_its_options_as_the_schema(tmp_path: Path):
    llm = Recording(RequestCache(tmp_path / "requests.sqlite"))
    judge = Judge(llm, method="generate")
    assert judge.yes_probability([[{"role": "user", "content": "ok?"}]]) == [1.0]
    assert llm.sent[0]["schema"] == schemas.answer(YES_NO)
    assert judge.metrics("j")["j/constrained"] == 1


def test_the_token_mask_keeps_exactly_the_allowed_bits():
    """Our bitmask application (llguidance's own is a torch.compile kernel: ~40 s to compile
    on a CPU) against the bits read one by one; logits past the mask's vocabulary are cut."""
    import torch

    from specalign.llm.constrained import apply_bitmask

    generator = torch.Generator().manual_seed(0)
    mask = torch.randint(-(2**31), 2**31 - 1, (2, 2), dtype=torch.int32, generator=generator)
    scores = torch.zeros(2, 70)
    out = apply_bitmask(scores, mask)
    assert out is scores and out.shape == (2, 70)
    for row in range(2):
        for token in range(70):
            bit = token < 64 and (int(mask[row, token // 32]) >> (token % 32)) & 1
            assert (out[row, token].item() == 0.0) == bool(bit), (row, token)
