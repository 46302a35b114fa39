"""Log-likelihood of continuations given prompts, batched.

Left padding puts every continuation at the end of its row, so the LM head runs only on the
last `max continuation + 1` positions (`logits_to_keep`): with a 49k vocabulary, full
logits would dominate CPU time. Rows are sorted by length so batches pad little.
Shared by the forced-choice eval and `HFBackend.score`, so both measure the same quantity.
"""

from __future__ import annotations

import inspect
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
    model: Any, tokenizer: Any, prompts: list[str], continuations: list[str], batch_size: int = 16
) -> list[list[float]]:
    """Per-token log p(continuation | prompt) for each (prompt, continuation) pair. Where
    prompts repeat (forced choice: one per option), each prompt runs once."""
    pairs = [encode_pair(tokenizer, p, c) for p, c in zip(prompts, continuations, strict=True)]
    if len(set(prompts)) < len(prompts):
        return shared_prompt_logprobs(model, tokenizer, prompts, pairs, batch_size)
    return separate_logprobs(model, tokenizer, pairs, batch_size)


def separate_logprobs(
    model: Any, tokenizer: Any, pairs: list[tuple[list[int], int]], batch_size: int
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
    return results


def cache_argument(model: Any) -> str:
    """transformers renamed forward's `past_key_values` to `cache` during 5.x."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def shared_prompt_logprobs(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    pairs: list[tuple[list[int], int]],
    batch_size: int,
) -> list[list[float]]:
    """Each distinct prompt runs once (left-padded, keeping its KV cache and its last logits,
    which predict every continuation's first token); the cache is then repeated for the
    prompt's continuations, which run as short right-padded rows on top of it."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    groups: dict[str, list[int]] = {}
    for i, prompt in enumerate(prompts):
        groups.setdefault(prompt, []).append(i)
    order = sorted(groups.values(), key=lambda g: len(pairs[g[0]][0]) - pairs[g[0]][1])
    results: list[list[float]] = [[] for _ in pairs]
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        heads = [pairs[g[0]][0][: len(pairs[g[0]][0]) - pairs[g[0]][1]] for g in batch]
        width = max(len(h) for h in heads)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, head in enumerate(heads):
            ids[row, width - len(head) :] = torch.tensor(head)
            mask[row, width - len(head) :] = 1
        out = model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=((mask.cumsum(-1) - 1).clamp(min=0)).to(device),
            use_cache=True,
            logits_to_keep=1,
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
            **{cache_argument(model): cache},
        ).logits
        rest = logits[:, :-1].float().log_softmax(-1).cpu()  # position j predicts token j+1
        for r, ((row, i), tail) in enumerate(zip(members, tails, strict=True)):
            token = torch.tensor(tail)
            later = rest[r, : len(tail) - 1].gather(-1, token[1:].unsqueeze(-1)).squeeze(-1)
            results[i] = [first[row, token[0]].item(), *later.tolist()]
    return results
