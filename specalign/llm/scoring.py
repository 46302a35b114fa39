"""Log-likelihood of continuations given prompts, batched.

Left padding puts every continuation at the end of its row, so the LM head runs only on the
last `max continuation + 1` positions (`logits_to_keep`): with a 49k vocabulary, full
logits would dominate CPU time. Rows are sorted by length so batches pad little.
Shared by the forced-choice eval and `HFBackend.score`, so both measure the same quantity.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch


def encode_pair(tokenizer: Any, prompt: str, continuation: str) -> tuple[list[int], int]:
    """Token ids of prompt+continuation and how many of them are the continuation."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full = tokenizer(prompt + continuation, add_special_tokens=False)["input_ids"]
    if full[: len(prompt_ids)] != prompt_ids:  # merge across the boundary: score it separately
        full = prompt_ids + tokenizer(continuation, add_special_tokens=False)["input_ids"]
    return full, len(full) - len(prompt_ids)


@torch.no_grad()
def continuation_logprobs(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    continuations: list[str],
    batch_size: int = 16,
    done: Callable[[int], None] | None = None,
) -> list[list[float]]:
    """Per-token log p(continuation | prompt) for each (prompt, continuation) pair. Where
    prompts repeat (forced choice: one per option), each prompt runs once. `done(n)`: called
    as each batch's n pairs are scored (the caller's progress)."""
    pairs = [encode_pair(tokenizer, p, c) for p, c in zip(prompts, continuations, strict=True)]
    if len(set(prompts)) < len(prompts):
        return shared_prompt_logprobs(model, tokenizer, prompts, pairs, batch_size, done)
    return separate_logprobs(model, tokenizer, pairs, batch_size, done)


def separate_logprobs(
    model: Any,
    tokenizer: Any,
    pairs: list[tuple[list[int], int]],
    batch_size: int,
    done: Callable[[int], None] | None = None,
) -> list[list[float]]:
    """One row per pair: prompt and continuation in one forward pass."""
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    results: list[list[float]] = [[] for _ in pairs]
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        length = max(len(pairs[i][0]) for i in rows)
        keep = max(pairs[i][1] for i in rows)
        input_ids = torch.full((len(rows), length), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for row, i in enumerate(rows):
            ids = pairs[i][0]
            input_ids[row, length - len(ids) :] = torch.tensor(ids)
            mask[row, length - len(ids) :] = 1
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            position_ids=position_ids.to(device),
            logits_to_keep=keep + 1,
            use_cache=False,
        ).logits
        # logits[:, j] predicts token length-keep+j; the last position predicts nothing
        logp = logits[:, :-1].float().log_softmax(-1).cpu()
        targets = input_ids[:, length - keep :]
        token_logp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        for row, i in enumerate(rows):
            count = pairs[i][1]
            results[i] = token_logp[row, keep - count :].tolist()
        if done is not None:
            done(len(rows))
    return results


def cache_argument(model: Any) -> str:
    """transformers renamed forward's `past_key_values` to `cache` during 5.x."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


SHARED_PREFIX_MIN = 8  # tokens all prompts of a batch start with, worth running once


def common_prefix(heads: list[list[int]]) -> int:
    """Tokens every head starts with (the chat template's system turn, say), keeping at
    least one token of each head for the pass that predicts its continuations."""
    n = min(len(h) for h in heads) - 1
    for i in range(max(n, 0)):
        if any(h[i] != heads[0][i] for h in heads):
            return i
    return max(n, 0)


def shared_prompt_logprobs(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    pairs: list[tuple[list[int], int]],
    batch_size: int,
    done: Callable[[int], None] | None = None,
) -> list[list[float]]:
    """Each distinct prompt runs once, and so does what a batch's prompts start with: the
    common prefix (one row, its KV cache repeated), then each prompt's rest (left-padded
    after the prefix; its last logits predict every continuation's first token), then the
    prompt's KV cache is repeated for its continuations, which run as short right-padded
    rows on top of it."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    argument = cache_argument(model)
    groups: dict[str, list[int]] = {}
    for i, prompt in enumerate(prompts):
        groups.setdefault(prompt, []).append(i)
    order = sorted(groups.values(), key=lambda g: len(pairs[g[0]][0]) - pairs[g[0]][1])
    results: list[list[float]] = [[] for _ in pairs]
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        heads = [pairs[g[0]][0][: len(pairs[g[0]][0]) - pairs[g[0]][1]] for g in batch]
        shared = common_prefix(heads) if len(heads) > 1 else 0
        shared = shared if shared >= SHARED_PREFIX_MIN else 0
        past: dict[str, Any] = {}
        if shared:
            out = model(input_ids=torch.tensor([heads[0][:shared]]).to(device), use_cache=True)
            cache = getattr(out, "cache", None) or out.past_key_values
            cache.reorder_cache(torch.zeros(len(batch), dtype=torch.long).to(device))
            past = {argument: cache}
        rests = [head[shared:] for head in heads]
        width = max(len(r) for r in rests)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), shared + width), dtype=torch.long)
        mask[:, :shared] = 1
        for row, rest in enumerate(rests):
            ids[row, width - len(rest) :] = torch.tensor(rest)
            mask[row, shared + width - len(rest) :] = 1
        out = model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=((mask.cumsum(-1) - 1).clamp(min=0))[:, shared:].to(device),
            use_cache=True,
            logits_to_keep=1,
            **past,
        )
        first = out.logits[:, -1].float().log_softmax(-1).cpu()  # predicts token 1 of each
        members = [(row, i) for row, group in enumerate(batch) for i in group]
        tails = [pairs[i][0][len(pairs[i][0]) - pairs[i][1] :] for _, i in members]
        length = max(len(t) for t in tails)
        rows = torch.tensor([row for row, _ in members])
        cache = getattr(out, "cache", None) or out.past_key_values
        cache.reorder_cache(rows.to(device))
        cont = torch.full((len(members), length), pad, dtype=torch.long)
        cont_mask = torch.zeros((len(members), length), dtype=torch.long)
        for r, tail in enumerate(tails):
            cont[r, : len(tail)] = torch.tensor(tail)
            cont_mask[r, : len(tail)] = 1
        start_pos = mask.sum(-1)[rows].unsqueeze(-1)
        logits = model(
            input_ids=cont.to(device),
            attention_mask=torch.cat([mask[rows], cont_mask], dim=-1).to(device),
            position_ids=(start_pos + torch.arange(length)).to(device),
            use_cache=True,
            **{argument: cache},
        ).logits
        later_logp = logits[:, :-1].float().log_softmax(-1).cpu()  # j predicts token j+1
        for r, ((row, i), tail) in enumerate(zip(members, tails, strict=True)):
            token = torch.tensor(tail)
            later = later_logp[r, : len(tail) - 1].gather(-1, token[1:].unsqueeze(-1)).squeeze(-1)
            results[i] = [first[row, token[0]].item(), *later.tolist()]
        if done is not None:
            done(len(members))
    return results
