"""Midtraining on the tiny random backbone: fixed documents -> packed causal-LM training.

The packing test runs the model on the very batch SFTTrainer builds, because the point is
that *the trainer's* packed rows keep documents apart, not that some hand-made batch does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from specalign.app import run
from specalign.errors import ConfigError
from specalign.pipeline.context import RunContext
from specalign.train.midtrain import midtrain_config, mix, mix_in_rows

DOCUMENTS = Path(__file__).parent / "data" / "documents.jsonl"
STAGE = ("stage=midtrain_fixed", "backbone=tiny_random", f"+spec.documents={DOCUMENTS}")


def test_midtrain_loss_decreases_and_mixes_in_conversations(cfg_factory, tmp_path):
    cfg = cfg_factory(
        *STAGE,
        "trainer=full",
        "trainer.args.learning_rate=3e-3",
        "trainer.args.max_steps=6",
        "trainer.args.per_device_train_batch_size=2",
        "stage.steps.midtrain.mix_in.path=cheese_demonstrations.jsonl",
        "stage.steps.midtrain.mix_in.ratio=0.25",
    )
    results = {r.name: r for r in run(cfg, tmp_path)}
    docs = results["documents"]
    assert docs.metrics["rows"] == 30
    row = json.loads((docs.artifact.path / "preview.jsonl").read_text().splitlines()[0])
    assert set(row) == {"text", "spec_id", "rule_ids", "doc_type", "source"}

    metrics = results["midtrain"].metrics
    assert metrics["steps"] == 6 and metrics["packing"] is True
    assert metrics["loss_last"] < metrics["loss_first"], metrics
    assert (metrics["rows"], metrics["mix_in_rows"]) == (40, 10)  # 10 of 40 = 0.25
    info = json.loads((results["midtrain"].artifact.path / "model.json").read_text())
    assert info["format"] == "full"


def test_mix_in_ratio_is_exact_and_seeded():
    documents = [f"doc {i}" for i in range(30)]
    extra = [f"chat {i}" for i in range(4)]  # fewer than needed: cycled
    mixed = mix(documents, extra, ratio=0.25, seed=3)
    origins = mixed["origin"]
    assert len(mixed) == 40 and origins.count("mix_in") == 10
    assert origins[-10:] != ["mix_in"] * 10, "mix-in rows must be spread, not appended"
    assert mixed["text"] == mix(documents, extra, ratio=0.25, seed=3)["text"]
    assert mix(documents, [], ratio=0.25, seed=3)["origin"].count("mix_in") == 0
    with pytest.raises(ConfigError, match=r"mix_in\.ratio"):
        mix_in_rows(10, 1.0)


def packed_batch(cfg_factory, tmp_path):
    """A batch SFTTrainer feeds the model under the step's config (the first whose row
    packs several documents), and the model."""
    from datasets import Dataset
    from trl import SFTTrainer

    ctx = RunContext(cfg_factory(*STAGE))
    backbone = ctx.backbone
    model = backbone.load_model().eval()
    texts = [json.loads(line)["text"] for line in DOCUMENTS.read_text().splitlines()]
    args = midtrain_config(
        {"args": {"per_device_train_batch_size": 1}},
        ctx.section("trainer"),
        tmp_path / "checkpoints",
        max_length=512,
        seed=0,
        report_to="none",
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict({"text": texts}),
        processing_class=backbone.load_tokenizer(),
    )
    batch = next(b for b in trainer.get_train_dataloader() if (b["position_ids"] == 0).sum() >= 2)
    return model, {k: v.cpu() if torch.is_tensor(v) else v for k, v in batch.items()}


def test_packed_documents_do_not_attend_to_each_other(cfg_factory, tmp_path):
    model, batch = packed_batch(cfg_factory, tmp_path)
    assert "attention_mask" not in batch, "a 2-D mask would disable the block-diagonal mask"
    positions = batch["position_ids"][0]
    starts = [*(positions == 0).nonzero().flatten().tolist(), len(positions)]
    assert len(starts) >= 3, f"the packed row holds one document only: {starts}"
    begin, end = starts[1], starts[2]  # the second document of the row
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        packed = model(**inputs, use_cache=False).logits[0, begin:end]
        alone = model(input_ids=batch["input_ids"][:, begin:end], use_cache=False).logits[0]
        causal = model(
            input_ids=batch["input_ids"],
            position_ids=torch.arange(len(positions))[None],
            use_cache=False,
        ).logits[0, begin:end]
    assert (packed - alone).abs().max() < 1e-4
    assert (causal - alone).abs().max() > 1e-2, "the check cannot fail: causal == isolated"


def test_midtrain_continues_the_adapter_it_receives(cfg_factory, tmp_path):
    again = "+stage.steps.midtrain_again"
    cfg = cfg_factory(
        *STAGE,
        "trainer=lora",
        "trainer.args.learning_rate=1e-2",
        "trainer.args.max_steps=2",
        "trainer.args.per_device_train_batch_size=2",
        f"{again}._target_=specalign.train.midtrain.MidtrainStep",
        f"{again}.inputs.dataset=documents",
        f"{again}.inputs.model=midtrain",
        f"{again}.max_length=128",
        f"{again}.args.learning_rate=0.0",
    )
    results = {r.name: r for r in run(cfg, tmp_path)}
    assert results["midtrain_again"].metrics["started_from"] == "adapter"

    def lora_b(name: str) -> dict[str, torch.Tensor]:
        path = results[name].artifact.path / "adapter" / "adapter_model.safetensors"
        return {k: w for k, w in load_file(str(path)).items() if "lora_B" in k}

    first, second = lora_b("midtrain"), lora_b("midtrain_again")
    assert any(w.abs().sum() > 0 for w in first.values()), "the first adapter did not train"
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first), "did not start from the input"


def test_fixed_documents_without_a_file_says_which_key_to_set(cfg_factory, tmp_path):
    from specalign.errors import SpecAlignError
    from specalign.pipeline.plan import build_plan

    with pytest.raises(SpecAlignError, match=r"\+spec\.documents="):
        build_plan(RunContext(cfg_factory("stage=midtrain_fixed", "backbone=tiny_random")))
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(SpecAlignError, match=r"spec\.documents: file not found"):
        build_plan(RunContext(cfg_factory(*STAGE[:2], f"+spec.documents={missing}")))


def test_long_documents_are_split_not_silently_cut(cfg_factory, tmp_path):
    """A document longer than max_length: `bfd_split` (the default) trains on all of it; `bfd`
    cuts it, and the cut is counted and logged."""
    long = tmp_path / "long.jsonl"
    words = " ".join(f"word{i}" for i in range(400))  # far over max_length=128 tokens
    rows = [
        {"text": words, "rule_ids": ["V1"]},
        {"text": "A short one about cheese.", "rule_ids": []},
    ]
    long.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    common = ("stage=midtrain_fixed", "backbone=tiny_random", f"+spec.documents={long}")
    common += ("trainer.args.max_steps=1", "trainer.args.per_device_train_batch_size=2")

    def midtrain(root, *extra):
        results = run(cfg_factory(*common, f"paths.root={root}", *extra), root)
        return next(r.metrics for r in results if r.name == "midtrain")

    split = midtrain(tmp_path / "split")
    assert split["documents_over_max_length"] == 1 and split["tokens_cut"] == 0
    assert split["packed_rows"] >= 3  # the long document became several rows
    cut = midtrain(tmp_path / "cut", "+stage.steps.midtrain.packing_strategy=bfd")
    assert cut["documents_over_max_length"] == 1 and cut["tokens_cut"] > 400
