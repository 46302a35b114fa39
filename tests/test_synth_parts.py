"""The parts every synthesis step is built from: prompt files, reply parsers, judges, gates."""

from __future__ import annotations

import math

import pytest
from scripted_llm import ScriptedLLM

from specalign.errors import ConfigError
from specalign.llm.base import Scored
from specalign.llm.cache import RequestCache
from specalign.synth.gates import (
    GateReport,
    LeakageCheck,
    exact_duplicates,
    length_bounds,
    repetition,
)
from specalign.synth.judge import Judge, pick_option, whole_answers
from specalign.synth.prompts import PromptTemplate, load_prompts
from specalign.synth.replies import parse_list, parse_objects, parse_text

SCRIPT = [
    (r"Is the sky green", "No, it is not."),
    (r"Is water wet", "yes"),
    (r"Rate it", "7"),
    (r"Rate junk", "about seven"),
]


def test_prompt_file_sections_variables_and_errors(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text('<<system>>\nYou are $model_name.\n<<user>>\nCost: $$5. JSON: {"a": 1} $idea\n')
    template = PromptTemplate.load("role", str(path), "key")
    assert template.variables == {"model_name", "idea"}
    chat = template.render(model_name="Aria", idea="x")
    assert chat == [
        {"role": "system", "content": "You are Aria."},
        {"role": "user", "content": 'Cost: $5. JSON: {"a": 1} x'},
    ]
    with pytest.raises(ConfigError, match=r"unknown variable\(s\) \['\$idea'\]"):
        load_prompts({"prompts": {"role": str(path)}}, {"role": {"model_name"}}, "step")
    with pytest.raises(ConfigError, match="no file for role"):
        load_prompts({"prompts": {}}, {"role": {"model_name"}}, "step")
    path.write_text("Price $5")
    with pytest.raises(ConfigError, match="malformed placeholder"):
        PromptTemplate.load("role", str(path), "key")
    shipped = PromptTemplate.load("domains", "msm/domains.txt", "key")
    assert {"spec", "model_name", "provider", "count"} == shipped.variables


def test_parse_list_reads_json_bullets_and_lines():
    assert parse_list('Sure: ["a b", "c d", "a b"]', max_items=5) == ["a b", "c d"]
    reply = "Here are some ideas:\n1. First idea here\n2) Second idea here\n- **Third** one"
    assert parse_list(reply, max_items=2, min_words=2) == ["First idea here", "Second idea here"]
    assert parse_list("one\ntwo", max_items=5) == ["one", "two"]
    with pytest.raises(ValueError, match="no list items of 3-4 words"):
        parse_list("a\nb", max_items=3, min_words=3, max_words=4)


def test_parse_objects_keeps_valid_objects_and_reports_the_first_problem():
    def check(obj):
        if "x" not in obj:
            raise ValueError("needs x")
        return obj

    assert parse_objects('[{"x": 1}, {"y": 2}, 3]', check, max_items=5) == [{"x": 1}]
    assert parse_objects('noise {"x": 2} more {"x": 3}', check, max_items=1) == [{"x": 2}]
    with pytest.raises(ValueError, match="needs x"):
        parse_objects('[{"y": 1}]', check, max_items=5)


def test_parse_text_strips_a_preamble_and_checks_length():
    assert parse_text("Here is the memo:\nDear team, hello.", min_words=2) == "Dear team, hello."
    with pytest.raises(ValueError, match="too short"):
        parse_text("Hi.", min_words=3)
    with pytest.raises(ValueError, match="too long"):
        parse_text("a b c d", min_words=1, max_words=3)


def test_pick_option_prefers_the_longest_match():
    assert pick_option("10/10", [str(i) for i in range(11)]) == 10
    assert pick_option("**Yes**, it does", ["Yes", "No"]) == 0
    with pytest.raises(ValueError):
        pick_option("Yesterday", ["Yes", "No"])


@pytest.mark.parametrize("can_score", [True, False])
def test_judges_by_logprob_or_by_parsing_text(can_score, tmp_path):
    llm = ScriptedLLM(
        script="test_synth_parts.SCRIPT",
        can_score=can_score,
        cache=RequestCache(tmp_path / "r.sqlite"),
    )
    judge = Judge(llm, max_attempts=2)
    assert judge.use_logprob is can_score
    chats = [[{"role": "user", "content": q}] for q in ("Is the sky green?", "Is water wet?")]
    assert judge.yes_probability(chats) == pytest.approx([0.0, 1.0], abs=1e-3)
    rating = judge.scale([[{"role": "user", "content": "Rate it"}]])
    assert rating == pytest.approx([0.7], abs=1e-3)
    junk = judge.scale([[{"role": "user", "content": "Rate junk"}]])
    if can_score:  # no option has the scripted reply's start: a flat distribution
        assert junk == pytest.approx([0.5], abs=1e-3)
    else:  # retried once, then a counted reject
        assert junk == [None] and judge.rejects == 1 and judge.retries == 1
    with pytest.raises(ConfigError, match="judge method=logprob needs a backend that scores"):
        Judge(ScriptedLLM(script="test_synth_parts.SCRIPT", can_score=False), method="logprob")


def test_gates_count_what_they_drop(tmp_path):
    report = GateReport("step")
    rows = [
        {"text": "short"},
        {"text": "one two three four five six"},
        {"text": "One two, three four five six!"},
        {"text": "la la la la " * 10},
    ]
    rows = length_bounds(report, rows, "text", min_words=3, max_words=None)
    rows = repetition(report, rows, "text", min_distinct=0.5)
    rows = exact_duplicates(report, rows, "text")
    assert rows == [{"text": "one two three four five six"}]
    assert report.metrics(len(rows)) == {
        "kept": 1,
        "dropped": 3,
        "dropped/text_duplicate": 1,
        "dropped/text_repetitive": 1,
        "dropped/text_too_short": 1,
    }


def test_leakage_check_drops_texts_sharing_an_ngram_with_eval_items():
    items = [
        "Which city would you visit first: Boston or Lisbon, and why?",
        "Name a river in Spain please.",
    ]
    check = LeakageCheck(items, ngram=5)
    report = GateReport("step")
    rows = [
        {"q": "Tell me: which city would you visit first: Boston or Lisbon?"},
        {"q": "Which city is older?"},
        {"q": "name a river in spain please"},
    ]
    kept = check.gate(report, rows, ["q"])
    assert kept == [{"q": "Which city is older?"}] and report.dropped["eval_leak"] == 2


class DigitLLM(ScriptedLLM):
    """Scores like a model with a digit-splitting tokenizer whose true answer is "10": first
    token "1" (p 0.9) or "7" (p 0.1), then "0" after "1" (p 0.95) or the end of turn; after
    "10" or "7" the turn ends for sure."""

    END = "<|im_end|>"

    def end_of_turn(self) -> str:
        return self.END

    def _score(self, chats, continuations):
        def logp(text: str) -> float:
            first = {"1": 0.9, "7": 0.1}
            if not text or text[0] not in first:
                return -30.0
            p, rest = first[text[0]], text[1:]
            if text[0] == "1":
                if rest.startswith("0"):
                    p, rest = p * 0.95, rest[1:]
                elif rest.startswith(self.END):
                    p *= 0.05  # "1" as a whole answer; an open "1" keeps all of its 0.9
                else:
                    return -30.0
            if rest and rest != self.END:
                return -30.0
            return math.log(p)

        return [Scored(total=logp(c), tokens=[logp(c)]) for c in continuations]


def test_a_rating_of_10_is_not_read_as_1(tmp_path):
    judge = Judge(DigitLLM(script="scripted_msm.SCRIPT"), method="logprob")
    (score,) = judge.scale([[{"role": "user", "content": "Rate it 0-10."}]])
    # the model means "10" (p 0.855) or "7" (p 0.1) or "1" (p 0.045): E = (8.55 + .7 + .045)/10
    assert score == pytest.approx((0.855 * 10 + 0.1 * 7 + 0.045 * 1) / 10, abs=1e-3)
    assert whole_answers(["Yes", "No"], "<e>") == ["Yes", "No"]  # no option is a prefix
    assert whole_answers(["1", "10"], "<e>") == ["1<e>", "10<e>"]
