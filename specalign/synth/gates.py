"""Quality gates between synthesis levels: each drops rows for a named reason, and the
report of kept / dropped counts goes into the step's metrics (manifest and W&B).

Gates: word-length bounds, degenerate repetition, exact duplicates, embedding near-duplicates
(specalign.synth.embed), judge filters (the steps apply them and call `drop`), and leakage:
a synthesized text that shares a long word n-gram with an eval item of the run would turn
the eval into a memory test, so it never reaches training.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable
from functools import cached_property
from typing import Any

log = logging.getLogger(__name__)
Row = dict[str, Any]
TOKEN = re.compile(r"[a-z0-9']+")


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = tokens(text)
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def as_text(value: Any) -> str:
    """A field's text: strings as they are, conversations as their turns' contents."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(as_text(v) for v in value)
    if isinstance(value, dict):
        return str(value.get("content", ""))
    return "" if value is None else str(value)


class GateReport:
    """Kept / dropped counts per gate and reason, for one step."""

    def __init__(self, step: str) -> None:
        self.step = step
        self.dropped: Counter[str] = Counter()

    def drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] += count

    def apply(self, gate: str, rows: list[Row], reason: Callable[[Row], str | None]) -> list[Row]:
        """Keep rows for which `reason(row)` is None; count the others under their reason."""
        kept = []
        for row in rows:
            why = reason(row)
            if why is None:
                kept.append(row)
            else:
                self.drop(why)
        if len(kept) < len(rows):
            log.info(
                "%s: gate %s dropped %d of %d", self.step, gate, len(rows) - len(kept), len(rows)
            )
        return kept

    def metrics(self, kept: int) -> dict[str, int]:
        return {
            "kept": kept,
            "dropped": sum(self.dropped.values()),
            **{f"dropped/{reason}": n for reason, n in sorted(self.dropped.items())},
        }


def length_bounds(
    report: GateReport, rows: list[Row], field: str, min_words: int, max_words: int | None
) -> list[Row]:
    def why(row: Row) -> str | None:
        count = len(as_text(row[field]).split())
        if count < min_words:
            return f"{field}_too_short"
        if max_words is not None and count > max_words:
            return f"{field}_too_long"
        return None

    return report.apply("length", rows, why)


def repetition(report: GateReport, rows: list[Row], field: str, min_distinct: float) -> list[Row]:
    """Drop degenerate loops ("X is Y. X is Y. ..."): too few distinct word 4-grams."""

    def why(row: Row) -> str | None:
        words = tokens(as_text(row[field]))
        grams = [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
        if len(grams) >= 8 and len(set(grams)) / len(grams) < min_distinct:
            return f"{field}_repetitive"
        return None

    return report.apply("repetition", rows, why)


def exact_duplicates(report: GateReport, rows: list[Row], field: str) -> list[Row]:
    seen: set[str] = set()

    def why(row: Row) -> str | None:
        norm = " ".join(tokens(as_text(row[field])))
        if norm in seen:
            return f"{field}_duplicate"
        seen.add(norm)
        return None

    return report.apply("exact_dedup", rows, why)


class LeakageCheck:
    """The run's eval items (the `eval_items` artifact) as word n-grams; `gate` drops rows
    that share one, so an evaluation never becomes a memory test."""

    def __init__(self, texts: Iterable[str], ngram: int = 8) -> None:
        self.texts = list(texts)
        self.n = int(ngram)

    @cached_property
    def grams(self) -> set[tuple[str, ...]]:
        grams: set[tuple[str, ...]] = set()
        for text in self.texts:
            grams |= ngrams(text, self.n)
        return grams

    def gate(self, report: GateReport, rows: list[Row], fields: Iterable[str]) -> list[Row]:
        fields = list(fields)

        def why(row: Row) -> str | None:
            for field in fields:
                if ngrams(as_text(row[field]), self.n) & self.grams:
                    return "eval_leak"
            return None

        return report.apply("leakage", rows, why)
