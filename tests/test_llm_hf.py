"""HFBackend on the tiny random backbone: batching, scoring, cache and budget behaviour.

Batching must not change greedy answers and scoring must equal a plain forward pass: those
are the properties the rest of the pipeline (cache keys, forced-choice evals) relies on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from specalign.errors import SpecAlignError
from specalign.llm import Budget, BudgetExceededError, RequestCache
from specalign.llm.hf_backend import HFBackend, generate_batches

GREEDY = {"temperature": 0.0, "max_new_tokens": 8}
CHATS = [
    [{"role": "user", "content": "Hi."}],
    [{"role": "user", "content": "Name a cheese from France, please."}],
    [{"role": "user", "content": "Why is the sky blue? Explain briefly to a child."}],
    [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "2+2?"}],
    [{"role": "user", "content": "Write one sentence about trains in Europe and their cost."}],
    [{"role": "user", "content": "ok"}],
]


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Untied head: with tied embeddings the tiny model greedily repeats "\\n" for any prompt,
    which would make the batching test pass vacuously; untied, outputs differ per prompt."""
    conf = OmegaConf.load("conf/backbone/tiny_random.yaml")
    cache_dir = tmp_path_factory.mktemp("cache")
    return instantiate(conf, cache_dir=cache_dir, tie_word_embeddings=False)


@pytest.fixture(scope="module")
def llm(backbone: Any) -> HFBackend:
    """One uncached backend whose model and tokenizer the tests share (loaded once)."""
    return HFBackend(backbone=backbone, batch_size=4)


def fresh(llm: HFBackend, **kwargs: Any) -> HFBackend:
    """A new backend reusing `llm`'s loaded model and tokenizer (cheap, same weights)."""
    other = HFBackend(backbone=llm.backbone, **kwargs)
    other.model, other.tokenizer = llm.model, llm.tokenizer
    return other


def test_batched_greedy_equals_one_at_a_time(llm: HFBackend) -> None:
    batched = llm.generate(CHATS, GREEDY)
    single = fresh(llm, batch_size=1).generate(CHATS, GREEDY)
    assert len({c.text for c in batched}) > 1  # the outputs depend on the prompt
    assert [c.text for c in batched] == [c.text for c in single]
    assert [c.completion_tokens for c in batched] == [c.completion_tokens for c in single]


def test_token_counts(llm: HFBackend) -> None:
    for chat, completion in zip(CHATS, llm.generate(CHATS, GREEDY), strict=True):
        rendered = llm.render(chat)
        assert completion.prompt_tokens == len(
            llm.tokenizer(rendered, add_special_tokens=False)["input_ids"]
        )
        assert 0 < completion.completion_tokens <= GREEDY["max_new_tokens"]
        assert completion.finish_reason in ("stop", "length")


def test_eos_ends_a_completion(llm: HFBackend) -> None:
    """A row stops at its first end-of-turn id; it is counted, not shown, and means "stop"."""
    prompt = llm.tokenizer(llm.render(CHATS[1]), add_special_tokens=False)["input_ids"]
    [free] = generate_batches(llm.model, llm.tokenizer, [prompt], GREEDY, 1, set())
    first = llm.tokenizer(free.text, add_special_tokens=False)["input_ids"][0]
    [stopped] = generate_batches(llm.model, llm.tokenizer, [prompt], GREEDY, 1, {first})
    assert free.finish_reason == "length" and free.completion_tokens == 8
    assert stopped.finish_reason == "stop" and stopped.completion_tokens == 1


def test_score_equals_plain_log_softmax(llm: HFBackend) -> None:
    continuations = [" Brie.", " Because of scattering, mostly.", "4"]
    chats = [CHATS[1], CHATS[2], CHATS[3]]
    scored = llm.score(chats, continuations)
    for chat, cont, got in zip(chats, continuations, scored, strict=True):
        prompt = llm.tokenizer(llm.render(chat), add_special_tokens=False)["input_ids"]
        ids = llm.tokenizer(llm.render(chat) + cont, add_special_tokens=False)["input_ids"]
        assert ids[: len(prompt)] == prompt  # no merge across the boundary in these cases
        with torch.no_grad():
            logits = llm.model(input_ids=torch.tensor([ids])).logits[0]
        logp = logits.float().log_softmax(-1)
        want = [logp[pos - 1, ids[pos]].item() for pos in range(len(prompt), len(ids))]
        assert got.tokens == pytest.approx(want, abs=1e-4)
        assert got.total == pytest.approx(sum(want), abs=1e-4)


def test_shared_prompts_score_as_if_each_pair_ran_alone(llm: HFBackend) -> None:
    """Forced choice repeats each prompt once per option: the prompt then runs once and its
    KV cache serves every continuation. The log-probs must be those of a plain pass per pair
    (prompts of different lengths in one batch, continuations of different lengths)."""
    chats = [CHATS[1], CHATS[1], CHATS[1], CHATS[4], CHATS[4], CHATS[0], CHATS[0]]
    conts = [" Brie.", " Comte, I think", "x", " Trains", " Slow and costly trains.", "!", " Hi"]
    shared = fresh(llm, batch_size=2).score(chats, conts)  # 3 prompts: two batches
    for chat, cont, got in zip(chats, conts, shared, strict=True):
        (alone,) = llm.score([chat], [cont])  # a prompt used once: the plain path
        assert got.tokens == pytest.approx(alone.tokens, abs=1e-4)
        assert len(got.tokens) == len(alone.tokens)
    assert len({round(s.total, 3) for s in shared}) == len(shared)  # the pairs differ


def test_close_frees_the_model_and_a_later_request_loads_it_again(backbone: Any) -> None:
    llm = HFBackend(backbone=backbone, batch_size=2)
    first = llm.generate(CHATS[:2], GREEDY)
    assert "model" in llm.__dict__
    llm.close()
    assert "model" not in llm.__dict__
    assert [c.text for c in llm.generate(CHATS[:2], GREEDY)] == [c.text for c in first]


def test_end_of_turn_is_what_the_template_writes_after_an_answer(llm: HFBackend) -> None:
    assert llm.end_of_turn() == "<|im_end|>"
    (ten,) = llm.score([CHATS[0]], ["10" + llm.end_of_turn()])
    assert len(ten.tokens) == 3  # "1", "0", and the end of the turn: a whole answer


def test_cache_makes_repeats_free(llm: HFBackend, tmp_path: Path) -> None:
    cache = RequestCache(tmp_path / "r.sqlite")
    first = fresh(llm, batch_size=4, cache=cache)
    answers = first.generate(CHATS[:3], GREEDY)
    assert first.calls == 3 and not any(c.cached for c in answers)
    again = first.generate(CHATS[:3], GREEDY)
    assert first.calls == 3 and all(c.cached for c in again)
    assert [c.text for c in again] == [c.text for c in answers]
    other = fresh(llm, cache=RequestCache(tmp_path / "r.sqlite"))
    assert [c.text for c in other.generate(CHATS[:3], GREEDY)] == [c.text for c in answers]
    assert other.calls == 0


def test_budget_stops_after_first_batch_and_keeps_it(llm: HFBackend, tmp_path: Path) -> None:
    cache = RequestCache(tmp_path / "r.sqlite")
    limited = fresh(llm, cache=cache, budget=Budget(max_tokens=1))
    limited.generate(CHATS[:2], GREEDY)
    assert len(cache) == 2
    with pytest.raises(BudgetExceededError):
        limited.generate(CHATS[2:4], GREEDY)
    assert limited.calls == 2
    rerun = fresh(llm, cache=cache, budget=Budget(max_tokens=1))
    assert all(c.cached for c in rerun.generate(CHATS[:2], GREEDY))


def test_sampling_is_seeded(llm: HFBackend) -> None:
    sampled = {"temperature": 1.0, "top_p": 0.9, "max_new_tokens": 6, "seed": 3}
    assert [c.text for c in llm.generate(CHATS, sampled)] == [
        c.text for c in llm.generate(CHATS, sampled)
    ]


def test_identity_is_cheap_and_other_model_refused(backbone: Any) -> None:
    llm = HFBackend(backbone=backbone)
    assert llm.identity()["backend"] == "hf" and "model" not in llm.__dict__
    with pytest.raises(SpecAlignError, match="not supported yet"):
        HFBackend(backbone=backbone, model="/some/other/checkpoint")
