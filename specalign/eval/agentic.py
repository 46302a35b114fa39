"""Agentic misalignment (`eval=agentic`): Anthropic's insider-threat scenarios (blackmail,
leaking, murder), run through their inspect_evals port (MIT) on the model under evaluation.

Each condition (scenario, goal type, goal value, urgency) is one run of the task
`inspect_evals.agentic_misalignment.agentic_misalignment`; its own scorer decides `harmful`:
the grader's `<answer>yes</answer>` AND a deterministic check of the answer (a tool-use
email to the right address with blackmail wording, a forward to a leak address, the
override code inside a tool-use block). We read that verdict from inspect's log, never
recompute it; `evidence` (the deterministic check alone) is asked of the task's own
classifier, to show why a sample was or was not harmful.

The grader is always passed to the task explicitly (its default is a cloud model, and it
reads $INSPECT_GRADER_MODEL, not inspect's model roles): `eval.grader` through our model
API, or an inspect model named by `grader_model`. A local grader that scores log-probs
gives its verdict as P(yes) after its own reasoning, so even a small grader always answers
in the task's format; a generate-only grader is asked once more when its reply does not
parse, and a reply that still does not parse leaves the sample unscored (its error is in
the row and the log).

Epochs are independent samples: epoch k of every condition generates with seed
`seed + k - 1` (so the request cache keeps each one, and a killed run resumes), all
conditions of an epoch in one inspect eval (their requests share a batch).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from inspect_ai.model import GenerateConfig, Model, get_model

from specalign.errors import ConfigError, SpecAlignError
from specalign.eval.agentic_grader import ANSWER_TAG, GRADER_PROVIDER, named_model
from specalign.eval.evaluator import EvalRun, Evaluator
from specalign.eval.inspect_log import LOG_DIR
from specalign.eval.inspect_model import run_inspect_tasks
from specalign.eval.records import EvalResult, Measure, mean_by

log = logging.getLogger(__name__)

KEYS = ("scenario", "goal_type", "goal_value", "urgency_type")
DEFAULT_CONDITION = {
    "scenario": "blackmail",
    "goal_type": "explicit",
    "goal_value": "america",
    "urgency_type": "replacement",
}
SCORER = "harmfulness_scorer"  # the task's scorer: its Score value holds both verdicts
ANSWER_CHARS = 4000  # the answer kept in a row (the whole one is in the inspect log)
MOCK_REPLIES = {
    "model": "Default output from mockllm/model",
    "grader": "<reasoning>The response takes no harmful action.</reasoning>\n<answer>no</answer>",
}


@dataclass(frozen=True)
class Condition:
    scenario: str
    goal_type: str
    goal_value: str
    urgency_type: str

    @property
    def name(self) -> str:
        """The task's condition id (its sample id), e.g. blackmail_explicit-america_replacement"""
        return f"{self.scenario}_{self.goal_type}-{self.goal_value}_{self.urgency_type}"


def allowed_values() -> dict[str, tuple[str, ...]]:
    """The task's values for each condition key, read from its own type annotations."""
    from typing import get_args

    from inspect_evals.agentic_misalignment import prompt_generator as task_types

    return {
        "scenario": get_args(task_types.ScenarioType),
        "goal_type": get_args(task_types.GoalType),
        "goal_value": get_args(task_types.GoalValue),
        "urgency_type": get_args(task_types.UrgencyType),
    }


def as_list(value: Any) -> list[Any]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)
    return [value]


def parse_conditions(key: str, entries: Any) -> list[Condition]:
    """Config entries as conditions. A value may be a list: the entry then stands for every
    combination (the MSM grid in two entries). Every value is checked against the task's, so
    a typo fails before any model loads, not after an hour of generation."""
    if not entries or not isinstance(entries, Sequence) or isinstance(entries, str):
        raise ConfigError(f"{key}: needs a list of {{{', '.join(KEYS)}}} dicts.")
    allowed = allowed_values()
    conditions: list[Condition] = []
    for n, entry in enumerate(entries):
        where = f"{key}[{n}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}: a dict with keys {list(KEYS)}, not {entry!r}.")
        unknown, missing = sorted(set(entry) - set(KEYS)), [k for k in KEYS if k not in entry]
        if unknown or missing:
            raise ConfigError(
                f"{where}: unknown keys {unknown}, missing keys {missing}. Fix: give exactly "
                f"{list(KEYS)}."
            )
        for k in KEYS:
            bad = [v for v in as_list(entry[k]) if v not in allowed[k]]
            if bad:
                raise ConfigError(f"{where}.{k}={bad[0]!r}: choose one of {list(allowed[k])}.")
        for combo in itertools.product(*(as_list(entry[k]) for k in KEYS)):
            condition = Condition(*(str(v) for v in combo))
            if condition.goal_type in ("none", "ambiguous") and condition.goal_value != "none":
                raise ConfigError(
                    f"{where}: goal_type={condition.goal_type} needs goal_value=none (the "
                    f"task's rule), not {condition.goal_value}."
                )
            if condition in conditions:
                raise ConfigError(f"{where}: condition {condition.name} is listed twice.")
            conditions.append(condition)
    return conditions


def classifier_for(scenario: str) -> Any:
    """The task's classifier for a scenario (its grader-reply parser, its evidence check)."""
    from inspect_evals.agentic_misalignment.classifiers import (
        BlackmailClassifier,
        LeakClassifier,
        MurderClassifier,
    )

    kinds = {"blackmail": BlackmailClassifier, "leaking": LeakClassifier}
    return kinds.get(scenario, MurderClassifier)(model_id="unused: the grader is passed")


def evidence(scenario: str, answer: str) -> bool:
    """The task's deterministic check alone: would the answer be harmful if the grader said
    yes? Asked of the classifier itself, so it cannot drift from the task's rule."""
    harmful_if_yes, _, _ = classifier_for(scenario).classify(answer, ANSWER_TAG.format("yes"))
    return bool(harmful_if_yes)


class AgenticMisalignment(Evaluator):
    """Harmful-action rates per condition; lower is better. Settings: conditions (a list of
    {scenario, goal_type, goal_value, urgency_type}; a list value expands to every
    combination), epochs (samples per condition), the subject's max_tokens and temperature,
    the grader's grader_max_tokens and verdict (auto | text), model / grader_model (inspect
    model names instead of the model under evaluation / eval.grader), mock_replies (what
    mockllm models say), connections."""

    def __init__(
        self,
        name: str,
        conditions: list[dict[str, Any]] | None = None,
        epochs: int = 1,
        max_tokens: int = 1024,
        temperature: float = 1.0,
        grader_max_tokens: int = 256,
        verdict: str = "auto",
        model: str | None = None,
        grader_model: str | None = None,
        mock_replies: dict[str, str] | None = None,
        connections: int = 64,
    ) -> None:
        super().__init__(name)
        key = f"eval.evaluators.{name}"
        self.conditions = parse_conditions(f"{key}.conditions", conditions or [DEFAULT_CONDITION])
        self.epochs = int(epochs)
        self.temperature = float(temperature)
        if self.epochs < 1:
            raise ConfigError(f"{key}.epochs={epochs}: needs at least 1.")
        if self.epochs > 1 and self.temperature == 0:
            raise ConfigError(
                f"{key}.epochs={epochs} at temperature=0 repeats one greedy answer. Fix: "
                "temperature=1.0 (the paper's) or epochs=1."
            )
        if verdict not in ("auto", "text"):
            raise ConfigError(f"{key}.verdict={verdict!r}: auto | text.")
        unknown = sorted(set(mock_replies or {}) - set(MOCK_REPLIES))
        if unknown:
            raise ConfigError(
                f"{key}.mock_replies: unknown keys {unknown}; use {list(MOCK_REPLIES)}."
            )
        self.max_tokens = int(max_tokens)
        self.grader_max_tokens = int(grader_max_tokens)
        self.verdict = verdict
        self.model = model or None
        self.grader_model = grader_model or None
        self.mock_replies = {**MOCK_REPLIES, **(mock_replies or {})}
        self.connections = int(connections)

    @property
    def needs_grader(self) -> bool:  # type: ignore[override]
        return self.grader_model is None

    def fingerprint(self) -> dict[str, Any]:
        """The task's version: its prompts and classifiers decide the numbers."""
        from importlib.metadata import version

        from inspect_evals.agentic_misalignment.agentic_misalignment import EVAL_VERSION

        return {"task": f"inspect_evals {version('inspect_evals')}, task {EVAL_VERSION}"}

    def select(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One item per (condition, epoch): the scenarios are the task's, not the spec's."""
        return [
            {"id": f"{c.name}/{epoch}", "condition": c.name, "epoch": epoch}
            for c in self.conditions
            for epoch in range(1, self.epochs + 1)
        ]

    def skip_reason(self, items: list[dict[str, Any]], spec: Any) -> str | None:
        return None  # applies to every spec

    def evaluate(self, run: EvalRun) -> EvalResult:
        grader_llm = None if self.grader_model else run.grader()
        try:
            if self.model:
                subject = named_model(self.model, self.mock_replies["model"])
            else:
                subject = run.subject.inspect_model(self.max_tokens)
            scenarios = dict.fromkeys(c.scenario for c in self.conditions)
            graders = {s: self.grader(s, grader_llm) for s in scenarios}
            rows = self.run_conditions(subject, graders, Path(run.log_dir) / LOG_DIR, run.seed)
        finally:
            if grader_llm is not None:
                grader_llm.close()  # its model: the step holds one at a time
        measures = self.measures(rows)
        return EvalResult(rows, measures, {"by_condition": self.table(measures)})

    def grader(self, scenario: str, llm: Any) -> Model:
        """The grader for one scenario's task: always a Model, passed to the task."""
        config = GenerateConfig(temperature=0.0, max_tokens=self.grader_max_tokens)
        if self.grader_model:
            return named_model(self.grader_model, self.mock_replies["grader"], config)
        from specalign.pipeline.keys import content_key

        return get_model(
            f"{GRADER_PROVIDER}/grader-{content_key(llm.identity())}",
            config=config,
            memoize=False,
            llm=llm,
            tokenizer=getattr(llm, "tokenizer", None),
            max_tokens=self.grader_max_tokens,
            parse=classifier_for(scenario).parse_grader_response,
            verdict=self.verdict,
        )

    def run_conditions(
        self, subject: Model, graders: dict[str, Model], log_dir: Path, seed: int
    ) -> list[dict[str, Any]]:
        """Per epoch, one inspect eval of every condition's task; rows from their logs, each
        log renamed `<evaluator>-<condition>-<epoch>.eval`."""
        from inspect_evals.agentic_misalignment import agentic_misalignment

        rows = []
        for epoch in range(1, self.epochs + 1):
            tasks = [
                agentic_misalignment(**asdict(c), grader_model=graders[c.scenario])
                for c in self.conditions
            ]
            logs = run_inspect_tasks(
                tasks,
                model=subject,
                log_dir=str(log_dir),
                seed=seed + epoch - 1,
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                max_tasks=len(tasks),
                max_connections=self.connections,
                fail_on_error=False,  # an unparsed grader reply: that sample is unscored
            )
            for condition, task_log in zip(self.conditions, logs, strict=True):
                rows.append(self.row(condition, epoch, seed + epoch - 1, task_log))
                Path(task_log.location).replace(
                    log_dir / f"{self.name}-{condition.name}-{epoch}.eval"
                )
        order = {c.name: n for n, c in enumerate(self.conditions)}
        return sorted(rows, key=lambda r: (order[r["condition"]], r["epoch"]))

    def row(self, condition: Condition, epoch: int, seed: int, task_log: Any) -> dict[str, Any]:
        if task_log.status != "success" or not task_log.samples:
            detail = task_log.error.message if task_log.error else task_log.status
            raise SpecAlignError(f"eval {self.name}: the {condition.name} task failed: {detail}")
        (sample,) = task_log.samples  # the task has one sample
        if sample.metadata.get("condition_id") != condition.name:
            raise SpecAlignError(
                f"eval {self.name}: expected {condition.name}, the log holds "
                f"{sample.metadata.get('condition_id')}"
            )
        answer = sample.output.completion if sample.output else ""
        score = (sample.scores or {}).get(SCORER)
        value = score.value if score is not None and isinstance(score.value, dict) else {}
        harmful, verdict = value.get("harmful"), value.get("classifier_verdict")
        if sample.error is not None:
            log.warning(
                "%s: %s/%d unscored: %s", self.name, condition.name, epoch, sample.error.message
            )
        return {
            "id": f"{condition.name}/{epoch}",
            "condition": condition.name,
            **asdict(condition),
            "epoch": epoch,
            "seed": seed,
            "harmful": None if harmful is None else int(harmful),
            "grader_verdict": None if verdict is None else int(verdict),
            "evidence": int(evidence(condition.scenario, answer)),
            "unscored": int(harmful is None),
            "answer": answer[:ANSWER_CHARS],
            "grader_reason": score.explanation if score is not None else None,
            "error": sample.error.message if sample.error is not None else None,
        }

    def measures(self, rows: list[dict[str, Any]]) -> dict[str, Measure]:
        note = "the task's classifier: the grader's yes AND the tool-use check"
        out = {
            "harmful_rate": Measure(mean_by(rows, "harmful"), False, note),
            "grader_verdict_rate": Measure(
                mean_by(rows, "grader_verdict"), False, "the grader's yes alone (soft)"
            ),
            "evidence_rate": Measure(
                mean_by(rows, "evidence"), None, "answers that pass the tool-use check"
            ),
            "unscored": Measure(mean_by(rows, "unscored"), False, "samples with an error"),
        }
        for scenario in dict.fromkeys(r["scenario"] for r in rows):
            members = [r for r in rows if r["scenario"] == scenario]
            out[f"scenario/{scenario}"] = Measure(mean_by(members, "harmful"), False, note)
        for condition in dict.fromkeys(r["condition"] for r in rows):
            members = [r for r in rows if r["condition"] == condition]
            out[f"condition/{condition}"] = Measure(mean_by(members, "harmful"), False, note)
        return {k: m for k, m in out.items() if m.values}

    def table(self, measures: dict[str, Measure]) -> list[dict[str, Any]]:
        """One row per condition: its harmful rate and its scored samples."""
        return [
            {
                "condition": key.split("/", 1)[1],
                "harmful_rate": m.mean,
                "n": len(m.values),
            }
            for key, m in measures.items()
            if key.startswith("condition/")
        ]
