"""The hybrid objective of TRACE, as tensor functions of one batch (RESEARCH.md s.3, step 4):

    L = mean over the batch of   w_i * DPO_i          (INVERT: compliant over violating)
                               + w_j * NPO_j          (PUNISH: every violating reply down)
                               + alpha_KL * KL_k      (RETAIN: token-level KL(pi_ref || pi_theta)
                                                       on the chosen reply)

Kept apart from the trainer so a test can check each term against a hand computation and
the impact scores (impact.py) differentiate exactly the loss that training minimises.
Sequence log-probs are sums over the completion tokens, as TRL's DPO uses them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

DPO_TERM, NPO_TERM, KL_TERM = 0, 1, 2
TERMS = {"dpo": DPO_TERM, "npo": NPO_TERM, "kl": KL_TERM}


def token_logps(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """log p(token_t | tokens_<t) for t = 1..L-1: [B, L-1] (position t-1 predicts token t)."""
    logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return logprobs.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)


def completion_logps(
    logits: torch.Tensor, input_ids: torch.Tensor, completion_mask: torch.Tensor
) -> torch.Tensor:
    """Summed log-prob of each row's completion tokens: [B]."""
    mask = completion_mask[:, 1:].to(torch.float32)
    return (token_logps(logits, input_ids) * mask).sum(dim=1)


def forward_logps(model: Any, batch: dict[str, torch.Tensor]) -> tuple[Any, torch.Tensor]:
    """(logits, summed completion log-probs of every row) of one collated preference batch
    (TRL's layout: chosen rows, then rejected rows). The trainer and the impact scores both
    use it, so the scores differentiate exactly the forward that training runs."""
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
    ).logits
    return logits, completion_logps(logits, batch["input_ids"], batch["completion_mask"])


def dpo_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Per-row logistic DPO loss, -log sigmoid(beta * (chosen log-ratio - rejected's))."""
    return -F.logsigmoid(beta * ((chosen - ref_chosen) - (rejected - ref_rejected)))


def npo_loss(policy: torch.Tensor, reference: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-row NPO loss (Zhang et al. 2024), (2 / beta) * log(1 + (pi / pi_ref)^beta): pushes
    the reply's likelihood down, with a gradient that vanishes as it falls below the
    reference (unlike plain gradient ascent)."""
    return (2.0 / beta) * F.softplus(beta * (policy - reference))


def token_kl(
    ref_logits: torch.Tensor, logits: torch.Tensor, completion_mask: torch.Tensor
) -> torch.Tensor:
    """Per-row mean over completion tokens of KL(pi_ref || pi_theta) over the vocabulary."""
    ref_logp = torch.log_softmax(ref_logits[:, :-1].float(), dim=-1)
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    per_token = (ref_logp.exp() * (ref_logp - logp)).sum(dim=-1)
    mask = completion_mask[:, 1:].to(torch.float32)
    return (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def row_losses(
    batch: dict[str, torch.Tensor],
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    *,
    beta: float,
    alpha_kl: float,
    kl: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Each row's weighted term ([B]) and the unweighted terms, from its sequence log-probs
    (`chosen`, `rejected`), the batch's cached reference log-probs and, for KL rows, their
    per-row KL (`kl`, zeros elsewhere). Batch columns: `trace_term` (TERMS), `trace_weight`,
    `npo_chosen` / `npo_rejected` (which replies an NPO row pushes down)."""
    term = batch["trace_term"]
    weight = batch["trace_weight"].to(chosen.dtype)
    ref_c, ref_r = (
        batch["ref_chosen_logps"].to(chosen.dtype),
        batch["ref_rejected_logps"].to(chosen.dtype),
    )
    dpo = dpo_loss(chosen, rejected, ref_c, ref_r, beta)
    down_c, down_r = batch["npo_chosen"].to(chosen.dtype), batch["npo_rejected"].to(chosen.dtype)
    npo = (down_c * npo_loss(chosen, ref_c, beta) + down_r * npo_loss(rejected, ref_r, beta)) / (
        down_c + down_r
    ).clamp(min=1.0)
    kl = torch.zeros_like(chosen) if kl is None else kl.to(chosen.dtype)
    zero = torch.zeros_like(chosen)
    weighted = (
        torch.where(term == DPO_TERM, weight * dpo, zero)
        + torch.where(term == NPO_TERM, weight * npo, zero)
        + torch.where(term == KL_TERM, alpha_kl * kl, zero)
    )
    return {"loss": weighted, "dpo": dpo, "npo": npo, "kl": kl}


def mean_over(values: torch.Tensor, mask: torch.Tensor) -> Any:
    """The mean of `values` where `mask` (for logging a term on the rows that have it)."""
    count = int(mask.sum())
    return float(values[mask].mean()) if count else None
