"""Constrained decoding for the local backend: a JSON schema becomes a token mask per step.

Small models defeat "ask for JSON, parse, retry": SmolLM2-135M's planner replies never
validated. A grammar engine compiles the schema against the tokenizer once, then at each
decoding step masks every token that cannot continue a valid reply, so what comes back
parses and its enums (rule ids, labels) hold. vLLM does the same in its structured outputs;
here the engine is a `transformers.LogitsProcessor` on `model.generate`.

Two engines (`synthesizer.constrained_decoding`): `llguidance` (default: a 3 MB wheel with
no dependencies) and `xgrammar` (what vLLM uses by default; pulls in triton). Their cost
per request is measured side by side in benchmarks/bench_constrained.py. Replies are
compact JSON (no free whitespace): a small model otherwise fills its token budget with
newlines.
"""

from __future__ import annotations

import json
from functools import cache, cached_property
from typing import Any

from specalign.errors import ConfigError

ENGINES = ("llguidance", "xgrammar", "none")
Schema = dict[str, Any]


def schema_text(schema: Schema) -> str:
    """The canonical text of a schema: what compiled grammars and cache keys are keyed by."""
    return json.dumps(schema, sort_keys=True, ensure_ascii=False)


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise ConfigError(
            f"synthesizer.constrained_decoding={engine!r}: choose one of {list(ENGINES)}."
        )
    if engine == "xgrammar":
        try:
            import xgrammar  # noqa: F401
        except ImportError as err:
            raise ConfigError(
                "synthesizer.constrained_decoding=xgrammar needs xgrammar: pip install "
                "xgrammar (or use the default, llguidance)."
            ) from err
    return engine


class Grammars:
    """Compiled grammars for one tokenizer and vocabulary, one per schema (compiled once)."""

    def __init__(self, engine: str, tokenizer: Any, vocab_size: int, eos_ids: set[int]) -> None:
        self.engine = check_engine(engine)
        self.tokenizer = tokenizer
        self.vocab_size = int(vocab_size)
        self.eos_ids = sorted(eos_ids)
        self.compiled: dict[str, Any] = {}

    @cached_property
    def _engine_tokenizer(self) -> Any:
        """The engine's view of the vocabulary (~1 s to build: once per backend)."""
        if self.engine == "llguidance":
            import llguidance.hf

            return llguidance.hf.from_tokenizer(
                self.tokenizer, n_vocab=self.vocab_size, eos_token=self.eos_ids
            )
        import xgrammar as xgr

        info = xgr.TokenizerInfo.from_huggingface(
            self.tokenizer, vocab_size=self.vocab_size, stop_token_ids=self.eos_ids
        )
        return xgr.GrammarCompiler(info)

    def compile(self, schema: Schema) -> Any:
        text = schema_text(schema)
        if text not in self.compiled:
            if self.engine == "llguidance":
                import llguidance

                grammar = llguidance.LLMatcher.grammar_from_json_schema(
                    text, defaults={"whitespace_flexible": False}
                )
                error = llguidance.LLMatcher.validate_grammar(grammar, self._engine_tokenizer)
                if error:
                    raise ConfigError(f"JSON schema {text[:200]} does not compile: {error}")
                self.compiled[text] = grammar
            else:
                self.compiled[text] = self._engine_tokenizer.compile_json_schema(
                    text, any_whitespace=False
                )
        return self.compiled[text]

    def processor(self, schema: Schema, batch_size: int) -> Any:
        """A fresh logits processor for one `generate` call over `batch_size` rows."""
        compiled = self.compile(schema)
        if self.engine == "llguidance":
            cls = llguidance_processor_class()
            return cls(self._engine_tokenizer, compiled, batch_size)
        import xgrammar as xgr

        return xgr.contrib.hf.LogitsProcessor(compiled)


@cache
def llguidance_processor_class() -> type:
    """The processor class, defined on first use: importing this module (to check a setting
    while planning) must not import transformers."""
    from transformers import LogitsProcessor

    class LLGuidanceProcessor(LogitsProcessor):
        """One llguidance matcher per row: consume the token sampled last step, then mask the
        logits to the tokens the grammar allows next (only end-of-turn once the reply is
        whole). A row that has ended (its matcher stopped) is padded by `generate`."""

        def __init__(self, tokenizer: Any, grammar: str, batch_size: int) -> None:
            import llguidance
            import llguidance.torch as lt

            self.matchers = [llguidance.LLMatcher(tokenizer, grammar) for _ in range(batch_size)]
            self.bitmask = lt.allocate_token_bitmask(batch_size, tokenizer.vocab_size)
            self.started = False

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            import llguidance.torch as lt

            if input_ids.shape[0] != len(self.matchers):
                raise RuntimeError("one LLGuidanceProcessor per generate call and batch")
            if self.started:
                for row, matcher in enumerate(self.matchers):
                    if not matcher.is_stopped():
                        matcher.consume_token(int(input_ids[row, -1]))
            self.started = True
            for row, matcher in enumerate(self.matchers):
                lt.fill_next_token_bitmask(matcher, self.bitmask, row)
            return apply_bitmask(scores, self.bitmask)

    return LLGuidanceProcessor


def apply_bitmask(scores: Any, bitmask: Any) -> Any:
    """-inf for every token whose bit is 0 in the packed (rows x vocab/32) int32 mask.
    llguidance's own `apply_token_bitmask_inplace` is a `torch.compile` kernel: on a CPU its
    first call compiles with inductor for ~40 s per process (and needs a C++ compiler); these
    plain tensor ops cost milliseconds per step at a 49k vocabulary."""
    import torch

    bits = torch.arange(32, dtype=torch.int32)
    allowed = ((bitmask.unsqueeze(-1) >> bits) & 1).reshape(bitmask.shape[0], -1)
    vocab = scores.shape[1]
    allowed = allowed[:, :vocab].to(device=scores.device, dtype=torch.bool)
    covered = scores[:, : allowed.shape[1]]  # a view: masking it masks `scores`
    if allowed.shape[1] < vocab:  # logits beyond the mask's vocabulary are never allowed
        scores[:, allowed.shape[1] :] = float("-inf")
    covered.masked_fill_(~allowed, float("-inf"))
    return scores
