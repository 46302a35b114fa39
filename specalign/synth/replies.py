"""Parsers for LLM replies: each returns the value or raises ValueError saying what is wrong,
which `generate_parsed` sends back to the model on a retry and records on a reject.

Lists are read leniently (a JSON array, or bullet / numbered lines), because small and large
models alike wrap lists in prose; what is kept must still pass the word-count bounds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.):]|\(\d+\))\s+")
QUOTES = "\"'`\u201c\u201d"


def words(text: str) -> int:
    return len(text.split())


def clean_item(text: str) -> str:
    text = BULLET.sub("", text.strip()).strip().strip(QUOTES).strip()
    return re.sub(r"^\*\*(.+?)\*\*", r"\1", text).strip()


def parse_list(text: str, *, max_items: int, min_words: int = 1, max_words: int = 60) -> list[str]:
    """Up to `max_items` distinct items of `min_words`-`max_words` words: a JSON array of
    strings if the reply holds one, else its bullet or numbered lines (else all its lines)."""
    items: list[str] = []
    match = re.search(r"\[.*\]", text, flags=re.DOTALL)
    if match:
        try:
            data = json.loads(match.group(0))
            items = [str(x) for x in data if isinstance(x, str | int | float)]
        except ValueError:
            items = []
    if not items:
        lines = [line for line in text.splitlines() if line.strip()]
        bulleted = [line for line in lines if BULLET.match(line)]
        items = bulleted or lines
    kept: list[str] = []
    for item in (clean_item(x) for x in items):
        if item.endswith(":"):  # a preamble ("Here are three ideas:"), not an item
            continue
        if min_words <= words(item) <= max_words and item.lower() not in map(str.lower, kept):
            kept.append(item)
    if not kept:
        raise ValueError(f"no list items of {min_words}-{max_words} words; write one item per line")
    return kept[:max_items]


def parse_objects(
    text: str, validate: Callable[[dict[str, Any]], dict[str, Any]], *, max_items: int
) -> list[dict[str, Any]]:
    """A JSON array of objects (or objects one per line); invalid objects are dropped, and a
    reply with none valid is an error naming the first problem."""
    candidates: list[Any] = []
    match = re.search(r"\[.*\]", text, flags=re.DOTALL)
    if match:
        try:
            candidates = json.loads(match.group(0))
        except ValueError:
            candidates = []
    if not isinstance(candidates, list) or not candidates:
        candidates = []
        for block in re.findall(r"\{[^{}]*\}", text, flags=re.DOTALL):
            try:
                candidates.append(json.loads(block))
            except ValueError:
                continue
    kept, problems = [], []
    for obj in candidates:
        try:
            if not isinstance(obj, dict):
                raise ValueError(f"not an object: {str(obj)[:40]!r}")
            kept.append(validate(obj))
        except (ValueError, TypeError, KeyError) as err:
            problems.append(str(err))
    if not kept:
        reason = problems[0] if problems else "no JSON objects in the reply"
        raise ValueError(f"{reason}; reply with a JSON array of objects")
    return kept[:max_items]


def parse_text(text: str, *, min_words: int, max_words: int | None = None) -> str:
    """Free text (a document, a question, an answer) within word bounds, stripped of a
    leading 'Here is ...:' line that chat models like to add."""
    body = text.strip()
    first, _, rest = body.partition("\n")
    if rest.strip() and first.rstrip().endswith(":") and words(first) <= 12:
        body = rest.strip()
    body = body.strip().strip(QUOTES).strip() if "\n" not in body else body
    count = words(body)
    if count < min_words:
        raise ValueError(f"too short ({count} words, need at least {min_words})")
    if max_words is not None and count > max_words:
        raise ValueError(f"too long ({count} words, at most {max_words})")
    return body
