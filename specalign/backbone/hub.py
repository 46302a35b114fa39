"""Backbones from the Hugging Face hub (Qwen, Llama, Gemma) or from a local copy of one.

Cluster users have the hub; everyone else points `backbone.source` at a downloaded directory.
When neither works the error says exactly that, instead of a deep huggingface_hub traceback.
"""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path
from typing import Any

from specalign.backbone.base import Backbone, BackboneUnavailableError

log = logging.getLogger("specalign.backbone")

# Skip what `from_pretrained` never reads (e.g. Llama's 16 GB `original/consolidated.00.pth`).
IGNORE_PATTERNS = ("original/*", "*.pth", "*.pt", "*.gguf", "*.h5", "*.msgpack", "*.onnx*")


class HubBackbone(Backbone):
    """`source` is a hub id (`Qwen/Qwen3-32B`) or a local checkpoint directory."""

    def __init__(self, *, source: str, revision: str | None = None, **common: Any) -> None:
        super().__init__(**common)
        self.source = str(source)
        self.revision = None if revision is None else str(revision)

    @property
    def local_source(self) -> Path | None:
        """`source` as an existing local directory, or None when it should be a hub id."""
        path = Path(self.source).expanduser()
        return path.resolve() if path.is_dir() else None

    @cached_property
    def model_path(self) -> str:
        """The local directory, else the hub snapshot (downloaded into the HF cache if needed)."""
        local = self.local_source
        if local is not None:
            return str(local)
        if self._looks_like_path():
            raise self._unavailable(
                f"the directory {self.source} does not exist", download_hint=False
            )
        return self._snapshot()

    def _looks_like_path(self) -> bool:
        """Hub ids are `org/name` (or a bare legacy `name`); anything else is a missing path."""
        return self.source.startswith(("/", ".", "~")) or self.source.count("/") > 1

    def _snapshot(self) -> str:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            HFValidationError,
            LocalEntryNotFoundError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        unreachable: tuple[type[BaseException], ...] = (
            HfHubHTTPError,
            HFValidationError,
            LocalEntryNotFoundError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
            RevisionNotFoundError,
            ConnectionError,
            TimeoutError,
        )
        try:
            import httpx

            unreachable += (httpx.HTTPError,)
        except ImportError:  # older huggingface_hub used requests, whose errors are OSErrors
            pass
        log.info("resolving %s (revision %s) on the hub", self.source, self.revision or "main")
        try:
            return snapshot_download(
                self.source, revision=self.revision, ignore_patterns=list(IGNORE_PATTERNS)
            )
        except GatedRepoError as err:
            raise self._unavailable(
                f"{self.source} is gated: accept its licence on huggingface.co and log in "
                f"(`hf auth login`) ({type(err).__name__})"
            ) from err
        except unreachable as err:
            raise self._unavailable(
                f"the hub cannot provide it here ({type(err).__name__}: {_first_line(err)})"
            ) from err

    def _unavailable(self, reason: str, *, download_hint: bool = True) -> BackboneUnavailableError:
        leaf = self.source.rstrip("/").rsplit("/", 1)[-1] or self.name
        fix = f"Set a local path with `backbone.source=/path/to/{leaf}`"
        if download_hint:
            fix += f" or pre-download it (`hf download {self.source}`) where the hub is reachable"
        return BackboneUnavailableError(
            f"backbone {self.name!r} (source {self.source!r}) is unavailable: {reason}. {fix}."
        )


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0].rstrip(".") if text else ""
