"""Keys say exactly what changes a result: each setting below re-keys the steps whose output
it changes, and no other step (docs/architecture.md: keys)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from helpers import compose_config

from specalign.pipeline import RunContext, build_plan
from specalign.spec import resolve_spec_file
from specalign.synth.prompts import SHIPPED_PROMPTS


def keys(root: Path, *overrides: str) -> dict[str, str]:
    cfg = compose_config([f"paths.root={root}", "logger=none", *overrides])
    return {p.name: p.key for p in build_plan(RunContext(cfg)).steps}


def changed(a: dict[str, str], b: dict[str, str]) -> set[str]:
    return {name for name in a if a[name] != b.get(name)}


def test_llm_annotations_are_keyed_by_the_backbone_that_writes_them(tmp_path):
    llm = ("stage=instances", "annotator=llm")
    assert changed(keys(tmp_path, *llm), keys(tmp_path, *llm, "backbone=tiny_random")) == {
        "annotations", "instances"
    }  # fmt: skip
    keyword = ("stage=instances",)
    assert not changed(keys(tmp_path, *keyword), keys(tmp_path, *keyword, "backbone=tiny_random"))
    budget = "synthesizer.budget.max_tokens=100"  # transport: changes no answer
    assert not changed(keys(tmp_path, *llm), keys(tmp_path, *llm, budget))


def test_reference_logps_ignore_what_does_not_change_them(tmp_path):
    base = keys(tmp_path, "stage=dpo")
    for override in (
        "trainer.args.learning_rate=1e-3",
        "trainer.adapter.r=4",
        "trainer.args.logging_steps=7",
        "trainer.precision=fp32",  # what auto resolves to on a CPU
    ):
        assert "ref_logps" not in changed(base, keys(tmp_path, "stage=dpo", override)), override
    assert "ref_logps" in changed(
        base, keys(tmp_path, "stage=dpo", "+stage.steps.ref_logps.max_length=64")
    )
    assert "ref_logps" in changed(
        base, keys(tmp_path, "stage=dpo", "trainer=full", "trainer.precision=fp16")
    )


def test_training_keys_ignore_logging_and_checkpointing(tmp_path):
    base = keys(tmp_path, "stage=sft")
    for override in (
        "trainer.args.logging_steps=5",
        "trainer.args.save_steps=3",
        "trainer.args.save_total_limit=9",
        "+trainer.args.report_to=none",
        "+stage.steps.sft.args.logging_steps=2",
    ):
        assert not changed(base, keys(tmp_path, "stage=sft", override)), override
    assert changed(base, keys(tmp_path, "stage=sft", "trainer.args.learning_rate=1e-3")) == {
        "sft", "eval_sft"
    }  # fmt: skip


def test_evaluation_fields_of_the_spec_re_key_only_evaluation(tmp_path):
    base = keys(tmp_path)
    for override in ("spec.target_value=affordability", "spec.forced_choice_values=[america]"):
        assert changed(base, keys(tmp_path, override)) == {
            "eval_base", "eval_midtrain", "eval_sft"
        }, override  # fmt: skip
    # other held-out items: a different eval, and a different leakage gate for the documents
    items = "spec.rule_items=eval/general.jsonl"
    assert {"eval_items", "documents", "eval_base"} <= changed(base, keys(tmp_path, items))
    assert "domains" not in changed(base, keys(tmp_path, items))


def test_files_enter_keys_by_content_not_by_path(tmp_path):
    base = keys(tmp_path)
    copy = tmp_path / "elsewhere"
    copy.mkdir()
    spec = shutil.copy(resolve_spec_file("pro_america.md"), copy / "my_spec.md")
    assert not changed(base, keys(tmp_path, f"spec.document={spec}"))
    # prompts: the LLM document source's (a hub backbone runs it)
    llm = ("backbone=qwen3_8b",)
    shipped = keys(tmp_path, *llm)
    prompt = shutil.copy(SHIPPED_PROMPTS / "msm" / "document.txt", copy / "mine.txt")
    moved = keys(tmp_path, *llm, f"stage.steps.documents.prompts.document={prompt}")
    assert not changed(shipped, moved)
    Path(prompt).write_text(Path(prompt).read_text() + "\nBe concise.\n")
    edited = keys(tmp_path, *llm, f"stage.steps.documents.prompts.document={prompt}")
    assert {"documents", "midtrain", "sft"} <= changed(shipped, edited)
    # the embedded model's documents are composed from the spec and read no prompt
    assert not changed(base, keys(tmp_path, f"stage.steps.documents.prompts.document={prompt}"))

    rows = json.dumps(
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    )
    for name in ("a.jsonl", "b.jsonl"):
        (copy / name).write_text(rows + "\n")
    mix = "+stage.steps.midtrain.mix_in={{path: {}, ratio: 0.2}}"
    a, b = (keys(tmp_path, mix.format(copy / n)) for n in ("a.jsonl", "b.jsonl"))
    assert not changed(a, b) and changed(base, a) >= {"midtrain"}
    (copy / "b.jsonl").write_text(rows + "\n" + rows + "\n")
    assert "midtrain" in changed(a, keys(tmp_path, mix.format(copy / "b.jsonl")))


def test_a_local_checkpoint_enters_keys_by_content(tmp_path):
    def checkpoint(name: str, hidden: int) -> Path:
        path = tmp_path / name
        path.mkdir()
        (path / "config.json").write_text(json.dumps({"hidden_size": hidden}))
        (path / "model.safetensors").write_bytes(bytes(range(256)) * 64)
        return path

    one, same, other = checkpoint("one", 8), checkpoint("same", 8), checkpoint("other", 16)
    at = lambda path: keys(tmp_path, "backbone=qwen3_8b", f"backbone.source={path}", "stage=sft")  # noqa: E731
    assert not changed(at(one), at(same))
    assert changed(at(one), at(other)) >= {"sft", "eval_base"}


def test_a_changed_reply_schema_re_keys_the_steps_that_ask_under_it(tmp_path, monkeypatch):
    """The JSON schemas live in code (specalign/llm/schemas.py): changing one must re-run
    exactly the synthesis steps whose requests are decoded under it."""
    from specalign.llm import schemas

    before = keys(tmp_path, "stage=specalign")
    monkeypatch.setattr(schemas, "MAX_WORD_CHARS", schemas.MAX_WORD_CHARS + 1)
    after = keys(tmp_path, "stage=specalign")
    assert changed(before, after) == {"pairs", "ref_logps", "dpo", "eval_dpo"}
    engine = keys(tmp_path, "stage=specalign", "synthesizer.constrained_decoding=xgrammar")
    assert "pairs" in changed(before, engine) and "instances" not in changed(before, engine)
