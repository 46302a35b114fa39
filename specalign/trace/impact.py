"""Alignment impact scores (RESEARCH.md s.3, steps 2-3): how much a step on each conflicting
pair would move the model toward the new policy, measured on a small gold batch.

g_J is the gradient of the preference (DPO) loss over the gold batch at the reference
weights; pair k's score is <g_J, g_k>, g_k the gradient of its own TRACE term (DPO on the
swap for INVERT, NPO for PUNISH); scores are clamped at 0 and L1-normalized over INVERT u
PUNISH, RETAIN weighs 0. This is first-order influence with an identity Hessian.

Two ways to get <g_J, g_k>, chosen by `impact.method`:
- `per_sample`: one backward pass per pair (the reference; the authors' way).
- `jvp` / `finite_difference`: <g_J, g_k> is the derivative of pair k's loss along g_J,
  so one forward-mode pass (`torch.func.jvp`) or two forward passes at theta +- eps*g_J
  (central difference) give it for a whole batch at once.
The parameters are the trainable ones the trace step trains (a fresh LoRA adapter seeded
like the trace step's, or all weights under trainer=full).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from typing import Any

import torch

from specalign.errors import ConfigError
from specalign.trace.labels import CONFLICTS, INVERT, PUNISH, RETAIN
from specalign.trace.objective import dpo_loss, forward_logps, row_losses
from specalign.trace.variants import training_row

METHODS = ("per_sample", "jvp", "finite_difference")
LABEL_SET = (RETAIN, INVERT, PUNISH)
IMPACT_TREATMENT = {INVERT: "dpo_swapped", PUNISH: "npo"}  # the terms TRACE trains them with


def compliant_replies(rows: list[dict[str, Any]]) -> list[Any]:
    """Every reply the triage found compliant with the new spec."""
    out = []
    for row in rows:
        out += [row[side] for side in ("chosen", "rejected") if not row[f"{side}_violates"]]
    return out


def gold_batch(rows: list[dict[str, Any]], size: int, seed: int) -> list[dict[str, Any]]:
    """About 1/3 RETAIN pairs as they are, 1/3 INVERT pairs swapped, the rest PUNISH prompts
    paired as (a random compliant reply, the violating chosen reply). A category with too few
    pairs leaves its share to the others; pairs are drawn without replacement."""
    rng = random.Random(seed)
    pools = {label: [r for r in rows if r["triage"] == label] for label in (RETAIN, INVERT, PUNISH)}
    for pool in pools.values():
        rng.shuffle(pool)
    compliant = compliant_replies(rows)
    if not compliant:
        raise ConfigError(
            "impact: no reply in the data complies with the new spec, so there is no gold "
            "preference to measure impact on. Check the triage (every reply violates)."
        )
    size = min(size, sum(len(p) for p in pools.values()))
    wanted = {RETAIN: size // 3, INVERT: size // 3}
    wanted[PUNISH] = size - wanted[RETAIN] - wanted[INVERT]
    taken = {label: min(n, len(pools[label])) for label, n in wanted.items()}
    short = size - sum(taken.values())
    for label in (PUNISH, INVERT, RETAIN):  # give the shortfall to whoever has pairs left
        extra = min(short, len(pools[label]) - taken[label])
        taken[label] += extra
        short -= extra
    gold = []
    for label, count in taken.items():
        for row in pools[label][:count]:
            pair = {"prompt": row["prompt"], "gold_of": label}
            if label == RETAIN:
                pair.update(chosen=row["chosen"], rejected=row["rejected"])
            elif label == INVERT:
                pair.update(chosen=row["rejected"], rejected=row["chosen"])
            else:
                pair.update(chosen=rng.choice(compliant), rejected=row["chosen"])
            gold.append(pair)
    return gold


def conflict_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The INVERT / PUNISH rows as training rows under TRACE's own terms, weight 1."""
    return [
        training_row(row, IMPACT_TREATMENT[row["triage"]], 1.0)
        for row in rows
        if row["triage"] in CONFLICTS
    ]


def batch_logps(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) summed completion log-probs: the trainer's own forward."""
    return forward_logps(model, batch)[1].chunk(2, dim=0)


def at_reference(batch: dict[str, torch.Tensor], ref: tuple[torch.Tensor, torch.Tensor]) -> dict:
    """The batch with the reference log-probs replaced by the model's own at theta_ref: the
    scores are taken at the reference, where policy == reference exactly."""
    return {**batch, "ref_chosen_logps": ref[0], "ref_rejected_logps": ref[1]}


def gold_gradient(
    model: Any, params: list[torch.Tensor], batches: Iterable[dict], beta: float
) -> list[torch.Tensor]:
    """g_J: the gradient of the mean DPO loss over the gold batch at the reference weights."""
    total = [torch.zeros_like(p) for p in params]
    count = 0
    for batch in batches:
        chosen, rejected = batch_logps(model, batch)
        loss = dpo_loss(chosen, rejected, chosen.detach(), rejected.detach(), beta).sum()
        for acc, grad in zip(total, torch.autograd.grad(loss, params), strict=True):
            acc += grad
        count += chosen.shape[0]
    return [g / max(count, 1) for g in total]


def conflict_losses(
    model: Any, batch: dict, beta: float, ref: tuple[torch.Tensor, torch.Tensor] | None = None
) -> torch.Tensor:
    """Each row's TRACE term at the current weights, against `ref` (default: the model's
    own log-probs, detached: the value at the reference)."""
    chosen, rejected = batch_logps(model, batch)
    ref = (chosen.detach(), rejected.detach()) if ref is None else ref
    return row_losses(at_reference(batch, ref), chosen, rejected, beta=beta, alpha_kl=0.0)["loss"]


def dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return float(sum((x.double() * y.double()).sum() for x, y in zip(a, b, strict=True)))


def per_sample_scores(
    model: Any,
    params: list[torch.Tensor],
    g: list[torch.Tensor],
    batches: Iterable[dict],
    beta: float,
) -> list[float]:
    """<g_J, g_k> with g_k from its own backward pass (one per pair; one forward per batch)."""
    scores = []
    for batch in batches:
        losses = conflict_losses(model, batch, beta)
        for i in range(losses.shape[0]):
            grads = torch.autograd.grad(losses[i], params, retain_graph=i < losses.shape[0] - 1)
            scores.append(dot(g, list(grads)))
    return scores


def jvp_scores(
    model: Any,
    names: list[str],
    params: list[torch.Tensor],
    g: list[torch.Tensor],
    batches: Iterable[dict],
    beta: float,
) -> list[float]:
    """d/de loss_k(theta + e g_J) at e = 0 for every row of a batch, in one forward-mode pass.
    Attention runs on SDPA's math backend: the fused CPU / flash kernels have no forward-mode
    derivative."""
    from torch.func import functional_call, jvp
    from torch.nn.attention import SDPBackend, sdpa_kernel

    scores: list[float] = []
    primals = tuple(p.detach() for p in params)
    for batch in batches:
        with torch.no_grad():
            ref = tuple(x.detach() for x in batch_logps(model, batch))

        def losses(*weights: torch.Tensor, batch: dict = batch, ref: tuple = ref) -> torch.Tensor:
            def call(**kwargs: Any) -> Any:
                return functional_call(model, dict(zip(names, weights, strict=True)), (), kwargs)

            return conflict_losses(call, batch, beta, ref)

        with sdpa_kernel(SDPBackend.MATH):
            _, derivative = jvp(losses, primals, tuple(t.detach() for t in g))
        scores += derivative.double().tolist()
    return scores


def finite_difference_scores(
    model: Any,
    params: list[torch.Tensor],
    g: list[torch.Tensor],
    batches: Iterable[dict],
    beta: float,
    step: float,
) -> list[float]:
    """(loss_k(theta + e g) - loss_k(theta - e g)) / 2e per row, e = step / |g|: two forward
    passes per batch. Error O(e^2); `step` is the parameter-space distance moved."""
    norm = math.sqrt(dot(g, g)) or 1.0
    eps = step / norm
    scores: list[float] = []

    def shift(sign: float) -> None:
        for p, t in zip(params, g, strict=True):
            p.add_(t, alpha=sign * eps)

    with torch.no_grad():
        for batch in batches:
            ref = batch_logps(model, batch)
            shift(+1)
            up = conflict_losses(model, batch, beta, ref)
            shift(-2)
            down = conflict_losses(model, batch, beta, ref)
            shift(+1)
            scores += ((up.double() - down.double()) / (2 * eps)).tolist()
    return scores


def normalized_weights(scores: list[float]) -> tuple[list[float], bool]:
    """Clamped at 0, L1-normalized; (weights, True) or, when no score is positive, uniform
    weights and False (no pair moves the model toward the gold preferences to first order)."""
    clamped = [max(0.0, s) for s in scores]
    total = sum(clamped)
    if total <= 0:
        return [1.0 / max(len(scores), 1)] * len(scores), False
    return [c / total for c in clamped], True


def score_fn(method: str) -> Callable[..., list[float]]:
    if method not in METHODS:
        raise ConfigError(f"stage.steps.impact.method={method!r}: choose one of {list(METHODS)}.")
    return {
        "per_sample": per_sample_scores,
        "jvp": jvp_scores,
        "finite_difference": finite_difference_scores,
    }[method]
