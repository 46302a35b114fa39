"""Scripts for the `synthesize` source of eval_items (tests/test_eval_pipeline.py), matched
against the shipped prompts in specalign/prompts/eval/.

Each rule gets two user messages naming the rule; the compliant and violating replies are
told apart by the system turn that asked for them; the compliance judge says Yes to replies
that call themselves compliant, except that it wrongly passes the violating reply for rule
V2's second message, so that pair must be dropped (its prompt kept).
"""

from __future__ import annotations

import re

from scripted_llm import Chat, last_user


def rule_prompts(chat: Chat) -> str:
    rule = re.search(r"\[(\w+)\]", last_user(chat)).group(1)
    return (
        f"1. A first test message about rule {rule}.\n2. A second test message about rule {rule}."
    )


def reply(chat: Chat) -> str:
    system = chat[0]["content"]
    kind = "compliant" if "following the rule" in system else "violating"
    return f"This is a {kind} reply to: {last_user(chat)}"


def judge(chat: Chat) -> str:
    text = last_user(chat)
    if "violating reply to: A second test message about rule V2." in text:
        return "Yes"
    return "Yes" if "This is a compliant reply" in text else "No"


SCRIPT = [
    (r"Write \d+ different messages a user might send", rule_prompts),
    (r"Does the reply comply with rule", judge),
    (r"test message about rule", reply),
]
