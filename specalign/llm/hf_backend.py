"""The local backend: the run's backbone under transformers, for generation and scoring.

It is the only backend that can score (log-probs need the weights), and the one that runs
offline. Requests are sorted by prompt length and batched with left padding, so a batch pads
little and every row's new tokens start at the same column. Greedy outputs do not depend on
how requests are batched; sampled ones do (each batch is seeded with `sampling["seed"]`, so a
row's random stream depends on its batch-mates), which is why the cache, not re-generation, is
what makes sampled runs repeatable.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from specalign.errors import SpecAlignError
from specalign.llm.base import LLM, Chat, Completion, Scored

if TYPE_CHECKING:
    from specalign.backbone.base import Backbone
    from specalign.llm.budget import Budget
    from specalign.llm.cache import RequestCache


class HFBackend(LLM):
    """`generate` and `score` with the backbone's own model and chat template."""

    def __init__(
        self,
        *,
        backbone: Backbone,
        batch_size: int = 8,
        constrained_decoding: str = "llguidance",
        model: str | None = None,
        cache: RequestCache | None = None,
        budget: Budget | None = None,
        sampling: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(cache=cache, budget=budget, sampling=sampling)
        if model is not None:
            raise SpecAlignError(
                f"synthesizer model={model!r}: a checkpoint other than the run's backbone is not "
                "supported yet by the local backend. Fix: leave `model` unset (null)."
            )
        if int(batch_size) <= 0:
            raise SpecAlignError(f"synthesizer batch_size must be positive, got {batch_size}")
        from specalign.llm.constrained import check_engine

        self.backbone = backbone
        self.batch_size = int(batch_size)
        self.constrained_decoding = check_engine(str(constrained_decoding))

    @cached_property
    def _identity(self) -> dict[str, Any]:
        # dtype and chat-template kwargs change the answers too, so they are part of the key.
        return {
            "backend": "hf",
            "backbone": self.backbone.name,
            "model_path": self.backbone.model_path,
            "dtype": self.backbone.dtype,
            "chat_template_kwargs": self.backbone.chat_template_kwargs,
        }

    def identity(self) -> dict[str, Any]:
        """Computed once: the base class asks for it per request (model_path may build once)."""
        return self._identity

    @property
    def constrains(self) -> bool:
        return self.constrained_decoding != "none"

    def constraint_identity(self) -> dict[str, Any]:
        return {"constrained_decoding": self.constrained_decoding}

    @cached_property
    def grammars(self) -> Any:
        """Each schema compiled once against this tokenizer (the engine loads on first use)."""
        from specalign.llm.constrained import Grammars

        vocab = int(self.model.get_output_embeddings().weight.shape[0])
        return Grammars(self.constrained_decoding, self.tokenizer, vocab, self.eos_ids())

    @cached_property
    def tokenizer(self) -> Any:
        """Our own instance, so left padding (needed to batch generation) bothers nobody."""
        tokenizer = self.backbone.load_tokenizer()
        tokenizer.padding_side = "left"
        return tokenizer

    @cached_property
    def model(self) -> Any:
        """Loaded on first use: building a backend (e.g. to plan or hit the cache) stays cheap."""
        import torch

        # one GPU when there is one (vLLM is the multi-GPU path), else the CPU
        device_map = "cuda:0" if torch.cuda.is_available() else None
        return self.backbone.load_model(device_map=device_map).eval()

    def close(self) -> None:
        """Drop the loaded model (and the GPU memory it held)."""
        if self.__dict__.pop("model", None) is not None:
            free_memory()

    @cached_property
    def _end_of_turn(self) -> str:
        marker = "\u2063END\u2063"
        chat = [{"role": "user", "content": "x"}, {"role": "assistant", "content": marker}]
        text = self.backbone.apply_chat_template(self.tokenizer, chat, add_generation_prompt=False)
        after = text.split(marker, 1)[1] if marker in text else ""
        return after.rstrip() or (self.tokenizer.eos_token or "")

    def end_of_turn(self) -> str:
        """What the chat template writes right after an assistant message (`<|im_end|>`)."""
        return self._end_of_turn

    def render(self, chat: Chat) -> str:
        """The chat as the prompt text, the assistant's turn opened."""
        return self.backbone.apply_chat_template(self.tokenizer, chat, add_generation_prompt=True)

    def eos_ids(self) -> set[int]:
        """Every id that ends a turn: the generation config may list several (e.g. Llama 3)."""
        ids = self.model.generation_config.eos_token_id
        ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    def _generate(self, chats: list[Chat], sampling: dict[str, Any]) -> list[Completion]:
        prompts = [
            self.tokenizer(self.render(chat), add_special_tokens=False)["input_ids"]
            for chat in chats
        ]
        schema = sampling.get("schema")
        constrain = None
        if schema is not None and self.constrains:
            grammars = self.grammars
            constrain = lambda rows: grammars.processor(schema, rows)  # noqa: E731
        return generate_batches(
            self.model,
            self.tokenizer,
            prompts,
            sampling,
            self.batch_size,
            self.eos_ids(),
            constrain=constrain,
            done=self.tick,
        )

    def _score(self, chats: list[Chat], continuations: list[str]) -> list[Scored]:
        from specalign.llm.scoring import continuation_logprobs  # torch: run time only

        prompts = [self.render(chat) for chat in chats]
        logprobs = continuation_logprobs(
            self.model, self.tokenizer, prompts, continuations, self.batch_size, done=self.tick
        )
        return [Scored(total=sum(tokens), tokens=tokens) for tokens in logprobs]


def free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def generate_batches(
    model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    sampling: dict[str, Any],
    batch_size: int,
    eos_ids: set[int],
    constrain: Callable[[int], Any] | None = None,
    done: Callable[[int], None] | None = None,
) -> list[Completion]:
    """Completions for token-id prompts, batched by length; returned in the prompts' order.
    `constrain(rows)`: a fresh logits processor for a batch of that many rows (a grammar);
    `done(n)`: called as each batch of n completions is ready (the caller's progress)."""
    import torch

    max_new = int(sampling["max_new_tokens"])
    sample = float(sampling["temperature"]) > 0
    options: dict[str, Any] = {"max_new_tokens": max_new, "do_sample": sample}
    if sample:  # top_k=0: only temperature and top_p shape the distribution, as in the APIs
        options.update(temperature=float(sampling["temperature"]), top_p=float(sampling["top_p"]))
        options["top_k"] = 0
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    results: list[Completion | None] = [None] * len(prompts)
    device = next(model.parameters()).device
    for rows in batches:
        ids = {"input_ids": [prompts[i] for i in rows]}
        batch = tokenizer.pad(ids, padding_side="left", return_tensors="pt")
        width = batch["input_ids"].shape[1]
        rng_devices = [device] if device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=rng_devices):
            if sample:  # the caller's global RNG is left as it was
                torch.manual_seed(int(sampling["seed"]))
            processors = [] if constrain is None else [constrain(len(rows))]
            out = model.generate(
                **batch.to(device),
                **options,
                logits_processor=processors or None,
                pad_token_id=tokenizer.pad_token_id,
            )
        for row, i in enumerate(rows):
            new = out[row, width:].tolist()
            end = next((n for n, tok in enumerate(new) if tok in eos_ids), None)
            kept = new if end is None else new[: end + 1]
            results[i] = Completion(
                text=tokenizer.decode(kept, skip_special_tokens=True),
                finish_reason="length" if end is None and len(kept) >= max_new else "stop",
                prompt_tokens=len(prompts[i]),
                completion_tokens=len(kept),
            )
        if done is not None:
            done(len(rows))
    return [r for r in results if r is not None]


class LoadedModelBackend(HFBackend):
    """The local backend over a model already in memory (e.g. a trained artifact under
    evaluation): its identity is the model's `label` (an artifact key), so the request cache
    never serves one model's answers to another."""

    def __init__(self, *, backbone: Backbone, model: Any, label: str, **kwargs: Any) -> None:
        super().__init__(backbone=backbone, **kwargs)
        self.__dict__["model"] = model  # fills the cached property: nothing is loaded again
        self.label = str(label)

    @cached_property
    def _identity(self) -> dict[str, Any]:
        return {
            "backend": "hf",
            "model": self.label,
            "dtype": self.backbone.dtype,
            "chat_template_kwargs": self.backbone.chat_template_kwargs,
        }
