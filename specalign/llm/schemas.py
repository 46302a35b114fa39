"""JSON schemas of the replies structured requests expect (see `LLM.generate(schema=...)`).

Each is an object at the top (what OpenAI's strict `json_schema` mode requires), every
property required and none extra, strings bounded in length (a grammar keeps a small model
from writing forever) and enums wherever the answer is one of a known set (rule ids,
labels, judge options): a constrained backend then cannot name a rule that is not there.
The parsers in `synth/replies.py` read these shapes as well as the free-form ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Schema = dict[str, Any]
MAX_WORD_CHARS = 24  # a "word" of the word-count patterns: 1-24 non-space characters


def text(max_words: int | None = None, min_words: int = 1) -> Schema:
    """A string of `min_words`-`max_words` words (single spaces between them), as a pattern:
    the parsers' word bounds then always hold, and the bound stops a small model from
    writing to its token limit. llguidance compiles even long bounds at once."""
    if max_words is None:
        return {"type": "string", "minLength": 1}
    lo, hi = max(1, int(min_words)), max(1, int(max_words))
    word = rf"\S{{1,{MAX_WORD_CHARS}}}"
    return {"type": "string", "pattern": rf"^{word}( {word}){{{lo - 1},{hi - 1}}}$"}


def one_of(options: Sequence[str]) -> Schema:
    return {"type": "string", "enum": list(dict.fromkeys(str(o) for o in options))}


def record(**properties: Schema) -> Schema:
    """An object with exactly these properties, all required."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def items(item: Schema, max_items: int, key: str = "items") -> Schema:
    """`{"items": [...]}` with 1..max_items entries."""
    return record(**{key: {"type": "array", "items": item, "minItems": 1, "maxItems": max_items}})


def answer(options: Sequence[str]) -> Schema:
    """A judge's pick: `{"answer": <one of the options>}`."""
    return record(answer=one_of(options))
