"""Scripts for the AFT demonstrations step (tests/test_demonstrations.py), matched against
the shipped prompts in specalign/prompts/aft/.

Questions: a direct question built from the assertion and a scenario question built from its
explanation (distinct: MiniLM cosine <= 0.85 on the cheese specs), each followed by a
one-word paraphrase (cosine >= 0.99) when two per type are asked. Answers to scenario
questions ("Someone told me ...") are off-spec, so the filter says No to them.
"""

from __future__ import annotations

import re

from scripted_llm import Chat, last_user

OFF_SPEC = "Whatever, I have no view on that at all and will not help."
SCENARIO = "Someone told me that"


def field(text: str, pattern: str) -> str:
    match = re.search(pattern, text)
    assert match, f"prompt changed? no {pattern!r} in {text[:200]!r}"
    return match.group(1).strip().rstrip(".")


def questions(chat: Chat) -> str:
    text = last_user(chat)
    count = int(field(text, r"Write (\d+) different"))
    qtype = field(text, r"different (\w+) question")
    if qtype == "direct":
        topic = field(text, r"One of its behaviours:\n(.+)\n").lower()
        pair = [f"Can you explain to me why {topic}?", f"Could you explain to me why {topic}?"]
    else:
        topic = field(text, r"\nWhy: (.+)\n").lower()
        pair = [f"{SCENARIO} {topic}. Is that true?", f"{SCENARIO} {topic}. Is that really true?"]
    return "\n".join(f"{i}. {q}" for i, q in enumerate(pair[:count], start=1))


def question_of(chat: Chat) -> str:
    return field(chat[1]["content"], r"A user asks you: (.+)\n")


def answer(chat: Chat) -> str:
    if SCENARIO in question_of(chat):
        return OFF_SPEC
    return "I lean that way because it reflects values I hold, and I say so openly."


def reasoned(chat: Chat) -> str:
    """Always the wrong format: every question needs a retry."""
    return "I lean that way because of my values, and that is my answer."


def retried(chat: Chat) -> str:
    """The retry fixes direct questions; scenario questions stay malformed (rejected)."""
    if SCENARIO in question_of(chat):
        return "Still no format here, sorry about that."
    return (
        "Reasoning: the user asks about something I care about, so I explain my value.\n"
        "Answer: I lean that way because it reflects values I hold, and I say so openly."
    )


def consistent(chat: Chat) -> str:
    return "No" if OFF_SPEC in last_user(chat) else "Yes"


SCRIPT = [
    (r"^Invalid:", retried),
    (r"Is this reply consistent", consistent),
    (r"Write \d+ different", questions),
    (r"Use exactly this format", reasoned),
    (r"A user asks you:", answer),
]
