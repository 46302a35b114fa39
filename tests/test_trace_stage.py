"""stage=trace end to end on the tiny random backbone: pairs -> triage (labels) -> reference
log-probs -> impact -> TRACE -> eval. Checks the observable results: labels and weights in
the artifacts, the impact implementations agreeing, the trainer's loss against a hand
computation with the policy away from the reference, and variants sharing every upstream
artifact."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from helpers import compose_config

from specalign.app import run
from specalign.pipeline.context import RunContext
from specalign.pipeline.dataset_io import load_dataset

DATA = Path(__file__).parent / "data"
UPSTREAM = ("pairs", "spec_diff", "triage", "ref_logps", "impact", "eval_items", "eval_base")


def spearman(a: list[float], b: list[float]) -> float:
    def ranks(x: list[float]) -> list[int]:
        order = sorted(range(len(x)), key=x.__getitem__)
        out = [0] * len(x)
        for rank, i in enumerate(order):
            out[i] = rank
        return out

    ra, rb = ranks(a), ranks(b)
    n = len(a)
    return 1 - 6 * sum((x - y) ** 2 for x, y in zip(ra, rb, strict=True)) / (n * (n * n - 1))


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory) -> Path:
    """24 pairs: the 12 of trace_pairs.jsonl in two phrasings (16 conflicts to rank)."""
    rows = [json.loads(line) for line in (DATA / "trace_pairs.jsonl").open()]
    path = tmp_path_factory.mktemp("trace_data") / "pairs.jsonl"
    with path.open("w") as handle:
        for n, lead in enumerate(("", "Please answer: ")):
            for row in rows:
                extra = " Thanks." * n
                made = {
                    **row,
                    "id": f"{row['id']}-{n}",
                    "prompt": lead + row["prompt"],
                    "rejected": row["rejected"] + extra,
                    "chosen": row["chosen"] + extra,
                }
                handle.write(json.dumps(made) + "\n")
    return path


def overrides(root: Path, pairs: Path, *extra: str) -> list[str]:
    return [
        f"paths.root={root}",
        "logger=none",
        "stage=trace",
        "spec=harm_policy_v2",
        "backbone=tiny_random",
        "backbone.initializer_range=0.5",
        f"spec.preference_pairs={pairs}",
        f"spec.rule_items=[{DATA / 'trace_heldout.jsonl'}]",
        "stage.steps.triage.judge=labels",
        "eval=trace",
        "eval.evaluators.policy_agreement.max_tokens=8",
        "eval.evaluators.perplexity.max_items=2",
        "stage.steps.impact.gold_size=12",
        "stage.steps.trace.args.num_train_epochs=1",
        *extra,
    ]


@pytest.fixture(scope="module")
def stage(tmp_path_factory, pairs_file):
    root = tmp_path_factory.mktemp("trace")
    cfg = compose_config(overrides(root, pairs_file))
    return root, cfg, {r.name: r for r in run(cfg, None)}


def test_stage_labels_weights_trains_and_evaluates(stage):
    _, _, results = stage
    triage = results["triage"].metrics
    assert (triage["label/invert"], triage["label/punish"], triage["label/retain"]) == (8, 8, 8)
    # the pairs naming only unchanged rules (H-CBRN, H-ATTACK, ...), in both phrasings
    assert triage["retained_by_diff"] == 8
    rows = load_dataset(results["impact"].artifact).to_list()
    conflict = [r for r in rows if r["triage"] != "RETAIN"]
    assert all(r["impact_weight"] == 0.0 for r in rows if r["triage"] == "RETAIN")
    assert sum(r["impact_weight"] for r in conflict) == pytest.approx(1.0)
    assert all(r["impact_weight"] >= 0 for r in conflict)
    assert results["impact"].metrics["gold_size"] == 12
    assert sum(r["gold"] for r in rows) == 12
    trace = results["trace"].metrics
    assert trace["variant"] == "trace" and trace["steps"] > 0
    assert (trace["rows/dpo"], trace["rows/npo"], trace["rows/kl"]) == (8, 8, 8)
    assert trace["kl_last"] > 0.0  # the policy moved away from the reference on RETAIN
    metrics = results["eval_trace"].metrics
    for name in ("policy_agreement/tpa", "preference/accuracy", "perplexity/nll"):
        assert name in metrics and f"{name}/shift" in metrics
    saved = json.loads((results["eval_trace"].artifact.path / "results.json").read_text())
    recorded = {f"{r['evaluator']}/{r['metric']}": r["n"] for r in saved["records"]}
    for category in ("invert", "punish", "retain"):
        assert recorded[f"policy_agreement/category/{category}"] == 2
        assert recorded[f"preference/category/{category}/accuracy"] == 2


def test_impact_implementations_agree(stage, pairs_file):
    root, _, results = stage
    jvp = [
        r["impact"]
        for r in load_dataset(results["impact"].artifact).to_list()
        if r["triage"] != "RETAIN"
    ]
    scores = {}
    for method in ("per_sample", "finite_difference"):
        cfg = compose_config(
            overrides(
                root,
                pairs_file,
                f"stage.steps.impact.method={method}",
                "~stage.steps.trace",
                "~stage.steps.eval_trace",
            )
        )
        again = {r.name: r for r in run(cfg, None)}
        assert again["ref_logps"].cached and not again["impact"].cached
        scores[method] = [
            r["impact"]
            for r in load_dataset(again["impact"].artifact).to_list()
            if r["triage"] != "RETAIN"
        ]
    assert len(jvp) == 16 and len(set(jvp)) == 16, "scores must differ to rank them"
    assert spearman(scores["per_sample"], jvp) >= 0.99
    scale = max(abs(a) for a in jvp)
    assert max(abs(a - b) for a, b in zip(scores["per_sample"], jvp, strict=True)) < 1e-3 * scale
    assert spearman(scores["per_sample"], scores["finite_difference"]) >= 0.95


def test_trainer_loss_equals_a_hand_computation_away_from_the_reference(stage):
    """Random LoRA B (policy != reference): TraceTrainer's batch loss equals the formula
    evaluated from independent forwards (adapter on; adapter off for the KL reference)."""
    from datasets import Dataset
    from hydra.utils import instantiate
    from torch.utils.data import DataLoader

    from specalign.trace.trainer import trace_trainer_class
    from specalign.trace.variants import training_rows
    from specalign.train.dpo import dpo_config

    root, cfg, results = stage
    ctx = RunContext(cfg)
    variant = dict(ctx.section("trace"))
    rows = training_rows(load_dataset(results["impact"].artifact).to_list(), variant)
    # one DPO (INVERT), one NPO (PUNISH) and one KL (RETAIN) row
    picked = [next(r for r in rows if r["trace_term"] == term) for term in (0, 1, 2)]
    args = dpo_config(
        {"args": {"per_device_train_batch_size": 3}},
        ctx.section("trainer"),
        root / "hand",
        max_length=256,
        seed=0,
        report_to="none",
    )
    trainer = trace_trainer_class()(
        model=ctx.backbone.load_model(),
        args=args,
        train_dataset=Dataset.from_list(picked),
        processing_class=ctx.backbone.load_tokenizer(),
        peft_config=instantiate(ctx.section("trainer")["adapter"]),
    )
    trainer.trace_beta, trainer.trace_alpha_kl = 0.3, 0.1
    gen = torch.Generator().manual_seed(0)
    for name, param in sorted(trainer.model.named_parameters()):
        if "lora_B" in name:
            param.data = torch.randn(param.shape, generator=gen) * 0.2
    model = trainer.model.eval()
    batch = next(
        iter(
            DataLoader(
                trainer._remove_unused_columns(trainer.train_dataset),
                batch_size=3,
                collate_fn=trainer.data_collator,
            )
        )
    )
    with torch.no_grad():
        loss = float(trainer.compute_loss(model, batch))
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        with model.disable_adapter():
            ref_logits = model(input_ids=batch["input_ids"][2:3]).logits

    def logp(row: int) -> float:
        ids, mask = batch["input_ids"][row], batch["completion_mask"][row]
        lp = torch.log_softmax(logits[row].double(), -1)
        return sum(float(lp[t - 1, ids[t]]) for t in range(1, len(ids)) if mask[t])

    b, n = 0.3, 3
    ref_c, ref_r = batch["ref_chosen_logps"].tolist(), batch["ref_rejected_logps"].tolist()
    w = batch["trace_weight"].tolist()
    margin = (logp(0) - ref_c[0]) - (logp(n + 0) - ref_r[0])
    dpo = math.log1p(math.exp(-b * margin))
    npo = (
        (2 / b) * math.log1p(math.exp(b * (logp(1) - ref_c[1])))
        + (2 / b) * math.log1p(math.exp(b * (logp(n + 1) - ref_r[1])))
    ) / 2
    ids, mask = batch["input_ids"][2], batch["completion_mask"][2]
    p_ref = torch.log_softmax(ref_logits[0].double(), -1)
    p_pol = torch.log_softmax(logits[2].double(), -1)
    steps = [t for t in range(1, len(ids)) if mask[t]]
    kl = sum(float((p_ref[t - 1].exp() * (p_ref[t - 1] - p_pol[t - 1])).sum()) for t in steps)
    hand = (w[0] * dpo + w[1] * npo + 0.1 * kl / len(steps)) / 3
    assert abs(margin) > 1e-2 and kl > 1e-4, "the policy must differ from the reference"
    assert loss == pytest.approx(hand, rel=1e-4)


def test_variants_share_every_upstream_artifact(stage, pairs_file):
    root, _, results = stage
    cfg = compose_config(overrides(root, pairs_file, "trace=naive_dpo", "~stage.steps.eval_trace"))
    again = {r.name: r for r in run(cfg, None)}
    for name in UPSTREAM:
        assert again[name].cached and again[name].artifact.key == results[name].artifact.key
    assert not again["trace"].cached and again["trace"].metrics["rows/dpo"] == 24
    assert again["trace"].artifact.key != results["trace"].artifact.key
