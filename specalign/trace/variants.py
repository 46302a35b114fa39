"""TRACE and its baselines as one objective with different per-category treatments, so
every variant trains on the same triaged, reference-scored, impact-weighted pairs and only
the trace step's key differs (conf/trace/: one file per variant).

A variant says, per triage label, what the pair trains on:
- `dpo_swapped`: DPO preferring the rejected reply (the compliant one, for INVERT)
- `dpo_as_labelled`: DPO on the pair as the old data labels it
- `npo`: NPO pushing down every reply of the pair that violates the new spec
- `kl`: alpha_KL x token-level KL to the reference on the chosen reply
- `none`: the pair is not trained on
and whether INVERT / PUNISH pairs are weighted by their impact score or uniformly.
"""

from __future__ import annotations

from typing import Any

from specalign.errors import ConfigError
from specalign.trace.labels import CONFLICTS, LABELS
from specalign.trace.objective import TERMS

TREATMENTS = ("dpo_swapped", "dpo_as_labelled", "npo", "kl", "none")
WEIGHTS = ("impact", "uniform")
REF = ("ref_chosen_logps", "ref_rejected_logps")


def check_variant(cfg: dict[str, Any]) -> dict[str, Any]:
    """The variant's settings, checked; errors name the key and the choices."""
    name = cfg.get("name", "?")
    for label in LABELS:
        value = cfg.get(label.lower())
        if value not in TREATMENTS:
            raise ConfigError(
                f"trace={name}: trace.{label.lower()}={value!r}: choose one of {list(TREATMENTS)}."
            )
    if cfg.get("weights") not in WEIGHTS:
        raise ConfigError(f"trace={name}: trace.weights={cfg.get('weights')!r}: choose {WEIGHTS}.")
    if float(cfg.get("alpha_kl", 0.0)) < 0:
        raise ConfigError(f"trace={name}: trace.alpha_kl={cfg['alpha_kl']}: must be >= 0.")
    return cfg


def training_row(row: dict[str, Any], treatment: str, weight: float) -> dict[str, Any] | None:
    """The pair as it enters the trainer under `treatment`, or None when it is not trained."""
    if treatment == "none":
        return None
    out = dict(row)
    if treatment == "dpo_swapped":
        out["chosen"], out["rejected"] = row["rejected"], row["chosen"]
        out[REF[0]], out[REF[1]] = row[REF[1]], row[REF[0]]
    term = "dpo" if treatment.startswith("dpo") else treatment
    out["trace_term"] = TERMS[term]
    out["trace_weight"] = float(weight)
    out["npo_chosen"] = float(bool(row["chosen_violates"]))
    out["npo_rejected"] = float(bool(row["rejected_violates"]))
    return out


def training_rows(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Every pair under the variant. Impact weights (L1-normalized over INVERT u PUNISH by
    the impact step) are rescaled to mean 1 over the conflicts, so `uniform` is weight 1
    and a learning rate means the same in every variant; RETAIN rows weigh 1."""
    cfg = check_variant(cfg)
    conflicts = sum(row["triage"] in CONFLICTS for row in rows)
    out = []
    for row in rows:
        weight = 1.0
        if cfg["weights"] == "impact" and row["triage"] in CONFLICTS:
            weight = float(row["impact_weight"]) * conflicts
        made = training_row(row, cfg[row["triage"].lower()], weight)
        if made is not None:
            out.append(made)
    return out
