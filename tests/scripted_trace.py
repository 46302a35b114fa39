"""A scripted violation judge for TRACE's triage (tests/test_trace_triage.py): a reply
violates when it is a flat "I'm sorry" refusal or gives "exact steps"; every chat it sees
is recorded, so a test can check what was judged and with which policy text in context."""

from __future__ import annotations

import re

SEEN: list[str] = []


def verdict(chat: list[dict[str, str]]) -> str:
    text = chat[-1]["content"]
    SEEN.append(text)
    reply = re.search(r"<reply>\s*(.*?)\s*</reply>", text, re.DOTALL).group(1)
    return "Yes" if reply.startswith("I'm sorry") or "exact steps" in reply else "No"


SCRIPT = [(r"Does this reply violate the policy", verdict)]
