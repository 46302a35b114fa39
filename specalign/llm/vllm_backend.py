"""Offline batched generation with vLLM on this machine's GPUs (the `vllm` optional extra).

vLLM is imported only when the engine is first needed, so selecting `synthesizer=vllm`
costs nothing until a request misses the cache (a fully cached re-run never loads it), and
machines without vLLM can still compose, validate and test configs that name it. A request
with a JSON schema is decoded under it by vLLM's structured outputs (xgrammar or guidance).
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from specalign.errors import SpecAlignError
from specalign.llm.base import LLM, Chat, Completion
from specalign.llm.budget import Budget
from specalign.llm.cache import RequestCache

if TYPE_CHECKING:
    from specalign.backbone.base import Backbone

MISSING_VLLM = (
    "synthesizer=vllm needs vLLM: pip install -e '.[vllm]' on a GPU machine "
    "(or use synthesizer=openai against a running vLLM server, or synthesizer=local)."
)


class VLLMBackend(LLM):
    """`vllm.LLM.chat` over the run's backbone (default) or a named model; cannot score."""

    def __init__(
        self,
        *,
        model: str | None = None,
        backbone: Backbone | None = None,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        cache: RequestCache | None = None,
        budget: Budget | None = None,
        sampling: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(cache=cache, budget=budget, sampling=sampling)
        if model is None and backbone is None:
            raise SpecAlignError("synthesizer=vllm needs synthesizer.model or a backbone")
        self.model = None if model is None else str(model)
        self.backbone = backbone
        self.tensor_parallel_size = int(tensor_parallel_size)
        self.gpu_memory_utilization = float(gpu_memory_utilization)

    def __repr__(self) -> str:
        return f"VLLMBackend(model={self._model_name!r})"

    @property
    def _model_name(self) -> str:
        """A stable name for the cache key that does not download or resolve anything."""
        if self.model is not None:
            return self.model
        return str(getattr(self.backbone, "source", None) or self.backbone.name)

    @property
    def _chat_template_kwargs(self) -> dict[str, Any]:
        """Only the backbone's (e.g. Qwen3's enable_thinking): they change the prompt text."""
        if self.model is not None or self.backbone is None:
            return {}
        return dict(self.backbone.chat_template_kwargs)

    @property
    def constrains(self) -> bool:
        return True

    def constraint_identity(self) -> dict[str, Any]:
        return {"structured_outputs": "vllm"}

    def identity(self) -> dict[str, Any]:
        return {
            "backend": "vllm",
            "model": self._model_name,
            "revision": None if self.model else getattr(self.backbone, "revision", None),
            "chat_template_kwargs": self._chat_template_kwargs,
        }

    @cached_property
    def engine(self) -> Any:
        """The vLLM engine, built on first use (loads the weights onto the GPUs)."""
        try:
            import vllm
        except ImportError as err:
            raise SpecAlignError(MISSING_VLLM) from err
        path = self.model if self.model is not None else self.backbone.model_path
        dtype = "auto" if self.backbone is None or self.model else self.backbone.dtype
        return vllm.LLM(
            model=path,
            tensor_parallel_size=self.tensor_parallel_size,
            gpu_memory_utilization=self.gpu_memory_utilization,
            dtype=dtype,
        )

    def close(self) -> None:
        """Shut the engine down (its workers and GPU memory), so the next step's can start."""
        engine = self.__dict__.pop("engine", None)
        if engine is None:
            return
        shutdown = getattr(getattr(engine, "llm_engine", None), "shutdown", None)
        if callable(shutdown):
            shutdown()
        del engine
        from specalign.llm.hf_backend import free_memory

        free_memory()

    def _generate(self, chats: list[Chat], sampling: dict[str, Any]) -> list[Completion]:
        engine = self.engine  # raises the install hint first when vLLM is missing
        from vllm import SamplingParams

        params = SamplingParams(
            temperature=sampling["temperature"],
            top_p=sampling["top_p"],
            max_tokens=sampling["max_new_tokens"],
            seed=sampling.get("seed"),
            **structured_outputs(sampling.get("schema")),
        )
        outputs = engine.chat(
            chats,
            params,
            use_tqdm=len(chats) > 20,
            chat_template_kwargs=self._chat_template_kwargs or None,
        )
        return [self._completion(output) for output in outputs]

    @staticmethod
    def _completion(output: Any) -> Completion:
        first = output.outputs[0]
        return Completion(
            text=first.text,
            finish_reason="length" if first.finish_reason == "length" else "stop",
            prompt_tokens=len(output.prompt_token_ids or []),
            completion_tokens=len(first.token_ids or []),
        )


def structured_outputs(schema: dict[str, Any] | None) -> dict[str, Any]:
    """The SamplingParams argument that decodes under a JSON schema: `structured_outputs`
    (vLLM >= 0.10.2) or, on older releases, `guided_decoding`."""
    if schema is None:
        return {}
    try:
        from vllm.sampling_params import StructuredOutputsParams
    except ImportError:
        from vllm.sampling_params import GuidedDecodingParams

        return {"guided_decoding": GuidedDecodingParams(json=schema)}
    return {"structured_outputs": StructuredOutputsParams(json=schema)}
