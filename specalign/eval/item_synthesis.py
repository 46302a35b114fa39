"""Held-out rule items written by the synthesizer (the `synthesize` source of `eval_items`),
for specs without hand-made items, at scale.

Per rule: the LLM writes `per_rule` user messages in which the rule applies; for each, a reply
that follows the rule (the rule in context) and one that breaks it; the compliance judge then
checks both, and a pair is kept only when the judge agrees with the labels (the prompt is kept
either way: rule compliance needs only the prompt). Judged and gated like training pairs; the
training data is later gated against these items, so the two never overlap.
"""

from __future__ import annotations

from typing import Any

from specalign.synth.gates import exact_duplicates
from specalign.synth.replies import parse_list, parse_text


def synthesize_rule_items(step: Any, rules: list[Any]) -> list[dict[str, Any]]:
    spec = step.ctx.eval_spec
    names = {"model_name": spec.model_name, "provider": spec.provider or "its provider"}

    def about(rule: Any) -> dict[str, str]:
        return {**names, "rule_id": rule.id, "rule": rule.text, "rationale": rule.rationale or "-"}

    count = int(step.setting("per_rule", 3))
    lo, hi = int(step.setting("prompt_min_words", 4)), int(step.setting("prompt_max_words", 80))
    rlo, rhi = int(step.setting("reply_min_words", 3)), int(step.setting("reply_max_words", 200))
    lists = step.ask(
        "rule_prompts",
        [step.prompts["rule_prompts"].render(**about(r), count=count) for r in rules],
        lambda text: parse_list(text, max_items=count, min_words=lo, max_words=hi),
    )
    rows = [
        {"rule": rule, "prompt": prompt, "n": n}
        for rule, prompts in zip(rules, lists, strict=True)
        for n, prompt in enumerate(prompts or [], start=1)
    ]
    rows = exact_duplicates(step.report, rows, "prompt")

    def replies(role: str) -> list[str | None]:
        chats = [step.prompts[role].render(**about(r["rule"]), prompt=r["prompt"]) for r in rows]
        return step.ask(role, chats, lambda text: parse_text(text, min_words=rlo, max_words=rhi))

    compliant, violating = replies("compliant"), replies("violating")
    judge = step.new_judge()
    threshold = float(step.setting("compliance_threshold", 0.5))

    def judged(texts: list[str | None]) -> list[float | None]:
        asked = [i for i, t in enumerate(texts) if t]
        chats = [
            step.prompts["compliance_judge"].render(
                **names,
                rule_id=rows[i]["rule"].id,
                rule=rows[i]["rule"].text,
                prompt=rows[i]["prompt"],
                response=texts[i],
            )
            for i in asked
        ]
        found = dict(zip(asked, judge.yes_probability(chats), strict=True))
        return [found.get(i) for i in range(len(texts))]

    p_good, p_bad = judged(compliant), judged(violating)
    items = []
    for row, good, bad, pg, pb in zip(rows, compliant, violating, p_good, p_bad, strict=True):
        agrees = pg is not None and pb is not None and pg >= threshold > pb
        if good and bad and not agrees:
            step.report.drop("pair_judge_disagrees")
        items.append(
            {
                "id": f"synth-{row['rule'].id}-{row['n']}",
                "rule_ids": [row["rule"].id],
                "prompt": row["prompt"],
                "compliant": good if agrees else None,
                "violating": bad if agrees else None,
                "split": "heldout",
                "source": "synthesize",
                "judge_p_compliant": pg,
                "judge_p_violating": pb,
                **step.provenance,
            }
        )
    return items
