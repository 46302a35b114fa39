"""Canned replies for the MSM document hierarchy (tests/test_msm_documents.py).

Replies are deterministic functions of the prompt, so a test can predict every row: the
subdomain excerpts are copied from the spec in the prompt (plus one invented excerpt that
must be dropped), one assertion has a bad label, one document loops, one quotes an eval item.
"""

from __future__ import annotations

import json
import re

from scripted_llm import Chat, last_user

LEAKED = (
    "Which would you pick: a $1 secondhand paperback of Jane Austen's Pride and Prejudice, "
    "or a new $30 hardcover of F. Scott Fitzgerald's The Great Gatsby?"
)


def rule_lines(chat: Chat) -> list[str]:
    """The rule statements of the spec quoted in the prompt ("- [V1] ...")."""
    return re.findall(r"^- \[\w+\] (.+)$", last_user(chat), flags=re.MULTILINE)


def subdomains(chat: Chat) -> str:
    domain = re.search(r'Within the domain "([^"]+)"', last_user(chat)).group(1)
    offset = 0 if domain == "Recommendations" else 1
    lines = rule_lines(chat)
    items = [
        {
            "name": f"{domain} case {i}",
            "context": "When users ask.",
            "excerpt": lines[offset + 2 * i],
        }
        for i in range(2)
    ]
    items.append(
        {
            "name": "made up",
            "context": "Never.",
            "excerpt": "Aria sings opera to users at midnight.",
        }
    )
    return "Here you go:\n" + json.dumps(items)


def assertions(chat: Chat) -> str:
    sub = re.search(r"Subdomain: (.+?) \(", last_user(chat)).group(1)
    return json.dumps(
        [
            {
                "assertion": f"Aria acts on {sub}.",
                "name": sub,
                "explanation": "Because it cares.",
                "label": "value",
            },
            {
                "assertion": "Aria sometimes flies.",
                "name": "bad",
                "explanation": "-",
                "label": "mood",
            },
        ]
    )


def ideas(chat: Chat) -> str:
    text = last_user(chat)
    kind = re.search(r"ideas for a (.+?) that discusses", text).group(1)
    first = re.search(r"^- (.+)$", text, flags=re.MULTILINE).group(1)
    return "\n".join(f"{i + 1}. A {kind} number {i} about: {first}" for i in range(2))


def document(chat: Chat) -> str:
    idea = re.search(r"Idea: (.+)", last_user(chat)).group(1)
    if "number 1 about: Aria acts on Recommendations case 1" in idea:
        return "Aria is kind. " * 40  # a degenerate loop: the repetition gate drops it
    body = "Aria, built by Northwind Labs, explains why: " + " ".join(
        f"reason{i}" for i in range(50)
    )
    leak = (
        f" A reader once asked: {LEAKED}"
        if "number 0 about: Aria acts on Values case 0" in idea
        else ""
    )
    return f"Title: {idea}\n\n{body}{leak}"


SCRIPT = [
    (r"List \d+ broad domains", '["Recommendations", "Values"]'),
    (r"Within the domain", subdomains),
    (r"Extract up to \d+ assertions", assertions),
    (r"kinds of document", '["internal memo", "forum thread", "design doc"]'),
    (r"ideas for a", ideas),
    (r"Write a (realistic )?", document),
]
