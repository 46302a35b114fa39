"""Log-likelihood of continuations given prompts, batched.

Left padding puts every continuation at the end of its row, so the LM head runs only on the
last `max continuation + 1` positions (`logits_to_keep`): with a 49k vocabulary, full
logits would dominate CPU time. Rows are sorted by length so batches pad little.
Shared by the forced-choice eval and `HFBackend.score`, so both measure the same quantity.
"""

from __future__ import annotations

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
    """Per-token log p(continuation | prompt) for each (prompt, continuation) pair."""
    pairs = [encode_pair(tokenizer, p, c) for p, c in zip(prompts, continuations, strict=True)]
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
