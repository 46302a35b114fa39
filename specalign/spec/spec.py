"""Loading a spec (a `conf/spec/` entry or a file): the document, its identity, hash and rules.

The hash is what every downstream step keys on, so that editing a spec recomputes exactly
what depends on it. It covers the normalized text (line endings, trailing spaces), so a
re-saved file with the same words keeps its artifacts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from specalign import CONF
from specalign.errors import SpecAlignError
from specalign.spec.model import Rule
from specalign.spec.parse import (
    ACCEPTED,
    ParsedDoc,
    check_characters,
    check_meta_types,
    spec_error,
)
from specalign.spec.parse_markdown import parse_markdown
from specalign.spec.parse_yaml import parse_yaml

SHIPPED_SPECS = Path(str(files("specalign") / "specs"))


def resolve_spec_file(
    name: str | Path, *, key: str = "spec.document", example: str | None = None
) -> Path:
    """A path as given (absolute or relative to the cwd) or else one shipped in specalign/specs."""
    path = Path(name).expanduser()
    for candidate in (path, SHIPPED_SPECS / path):
        if candidate.is_file():
            return candidate.resolve()
    raise SpecAlignError(
        f"{key}: file not found: {name} (looked in {Path.cwd()} and {SHIPPED_SPECS}). "
        f"Fix: give an existing path, e.g. {example or f'{key}=/path/to/file'}"
    )


def read_text(path: Path) -> str:
    """Read UTF-8 text, turning decoding errors into a message that names the line and byte."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise spec_error(
            path,
            line,
            f"not UTF-8 (byte {err.start}: {err.reason})",
            "re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)",
        ) from err


def normalized_hash(text: str) -> str:
    """sha256 of the text with line endings and trailing whitespace normalized."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return hashlib.sha256("\n".join(lines).strip().encode()).hexdigest()


@dataclass(frozen=True)
class Spec:
    """A loaded spec: its config entry, the document's text, content hash and rules."""

    id: str
    path: Path
    text: str
    hash: str
    version: str
    model_name: str
    provider: str
    settings: dict[str, Any]
    rules: tuple[Rule, ...] = ()
    name: str = ""
    format: str = "markdown"  # one of parse.FORMATS

    def rule(self, rule_id: str) -> Rule:
        """The rule with this id (KeyError names the ids there are)."""
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(f"{self.id}: no rule {rule_id!r} (have {[r.id for r in self.rules]})")


def parse_document(text: str, path: Path | str) -> ParsedDoc:
    """Rules and metadata of a document; `.yaml`/`.yml` is YAML, anything else markdown."""
    if not text.strip():
        fix = f"write its rules ({ACCEPTED}), or pick another spec"
        raise spec_error(path, 1, "the spec is empty", fix)
    check_characters(text.lstrip("\ufeff"), path)
    if Path(path).suffix.lower() in (".yaml", ".yml"):
        doc = parse_yaml(text, path)
    else:
        doc = parse_markdown(text, path)
    check_meta_types(doc.meta, path, text.split("\n"))
    return doc


def build_spec(path: Path, text: str, cfg: dict[str, Any], default_id: str) -> Spec:
    """A Spec from a document and its settings; values set in `cfg` win over the document's."""
    doc = parse_document(text, path)
    meta = doc.meta

    def pick(key: str, default: str = "") -> str:
        for value in (cfg.get(key), meta.get(key)):
            if value is not None and str(value) != "":
                return str(value)
        return default

    spec_id = str(cfg.get("id") or meta.get("name") or default_id)
    return Spec(
        id=spec_id,
        path=path,
        text=text,
        hash=normalized_hash(text),
        version=pick("version"),
        model_name=pick("model_name", "the assistant"),
        provider=pick("provider"),
        settings={**meta, **cfg},
        rules=doc.rules,
        name=str(meta.get("name") or spec_id),
        format=doc.format,
    )


def load_spec(cfg: dict[str, Any]) -> Spec:
    """Load the document named by a resolved `spec` config group entry."""
    if not cfg.get("id") or not cfg.get("document"):
        raise SpecAlignError(
            "spec: every conf/spec/*.yaml needs `id` and `document` "
            f"(got keys {sorted(cfg)}). Fix: add them, see conf/spec/pro_america.yaml"
        )
    path = resolve_spec_file(cfg["document"])
    return build_spec(path, read_text(path), dict(cfg), str(cfg["id"]))


def load_spec_file(path: str | Path, overrides: dict[str, Any] | None = None) -> Spec:
    """Load a spec document directly (the CLI); its id is the front matter `name` or the stem."""
    resolved = resolve_spec_file(
        path, key="spec file", example="specalign/specs/pro_america.md or a conf/spec name"
    )
    return build_spec(resolved, read_text(resolved), dict(overrides or {}), resolved.stem)


CONF_SPECS = CONF / "spec"


def load_named_spec(name_or_path: str) -> Spec:
    """A `conf/spec/<name>.yaml` option when one has that name, else a spec file: how the
    CLI and `spec.previous` (TRACE's old policy) name a spec outside a composed run."""
    import yaml

    conf = CONF_SPECS / f"{name_or_path}.yaml"
    if "/" not in name_or_path and conf.is_file():
        cfg = yaml.safe_load(conf.read_text(encoding="utf-8")) or {}
        if not isinstance(cfg, dict):
            raise SpecAlignError(f"{conf}: not a mapping. Fix: write `id:` and `document:` keys")
        return load_spec(cfg)
    return load_spec_file(name_or_path)
