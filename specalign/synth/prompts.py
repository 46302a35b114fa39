"""Prompts are files: one per role and level, with named `$variables`, shipped as package data
under specalign/prompts/ and replaceable from config without touching code.

A step's `prompts:` setting maps a role to a file: a name relative to specalign/prompts/
(`msm/domains.txt`) or a path of the user's own (`/home/me/domains.txt`). A file is plain
text in `string.Template` syntax (`$spec`, `${model_name}`; `$$` for a literal dollar), so JSON
braces need no escaping. Optional `<<system>>` / `<<user>>` lines split it into chat turns;
without them the whole file is one user turn. The file's hash enters the step's key, so
editing a prompt recomputes what it produced and nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import Any

from specalign.errors import ConfigError
from specalign.pipeline.keys import file_sha256

SHIPPED_PROMPTS = Path(str(files("specalign") / "prompts"))
SECTION = re.compile(r"^<<(system|user)>>\s*$", flags=re.MULTILINE)
Chat = list[dict[str, str]]


def resolve_prompt_file(name: str, key: str) -> Path:
    """A user's path as given, else a file shipped in specalign/prompts/."""
    path = Path(name).expanduser()
    for candidate in (path, SHIPPED_PROMPTS / path):
        if candidate.is_file():
            return candidate.resolve()
    shipped = sorted(str(p.relative_to(SHIPPED_PROMPTS)) for p in SHIPPED_PROMPTS.rglob("*.txt"))
    raise ConfigError(
        f"{key}={name}: prompt file not found (looked at {path} and in {SHIPPED_PROMPTS}). "
        f"Fix: give an existing file, or one of the shipped prompts: {', '.join(shipped)}"
    )


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt file split into chat turns, with the variables it uses."""

    role: str
    path: Path
    turns: tuple[tuple[str, Template], ...]

    @classmethod
    def load(cls, role: str, name: str, key: str) -> PromptTemplate:
        path = resolve_prompt_file(name, key)
        text = path.read_text(encoding="utf-8")
        parts = SECTION.split(text)
        if len(parts) == 1:
            turns = [("user", text.strip())]
        else:
            if parts[0].strip():
                raise ConfigError(
                    f"{path}: text before the first <<system>>/<<user>> line. Fix: move it "
                    "under a section marker or drop the markers."
                )
            turns = [(parts[i], parts[i + 1].strip()) for i in range(1, len(parts), 2)]
        if not turns or not all(body for _, body in turns):
            raise ConfigError(f"{path}: empty prompt (or an empty section). Fix: write the prompt.")
        template = cls(role, path, tuple((r, Template(body)) for r, body in turns))
        bad = [v for _, t in template.turns for v in invalid_placeholders(t)]
        if bad:
            raise ConfigError(f"{path}: malformed placeholder(s) {bad}. Fix: write $$ for a '$'.")
        return template

    @property
    def variables(self) -> set[str]:
        return {name for _, t in self.turns for name in t.get_identifiers()}

    def sha256(self) -> str:
        return file_sha256(self.path)

    def check(self, available: set[str]) -> None:
        """Fail at plan time when the file uses a variable the step does not provide."""
        unknown = sorted(self.variables - available)
        if unknown:
            raise ConfigError(
                f"{self.path}: unknown variable(s) {['$' + v for v in unknown]} in the "
                f"'{self.role}' prompt. Available: {sorted('$' + v for v in available)}."
            )

    def render(self, **values: Any) -> Chat:
        return [
            {"role": role, "content": t.substitute({k: str(v) for k, v in values.items()})}
            for role, t in self.turns
        ]


def invalid_placeholders(template: Template) -> list[str]:
    """`$` signs that are neither `$name`, `${name}` nor `$$`."""
    bad = []
    for match in template.pattern.finditer(template.template):
        if match.group("invalid") is not None:
            start = match.start("invalid")
            bad.append(template.template[start : start + 12])
    return bad


def load_prompts(
    settings: dict[str, Any], variables: dict[str, set[str]], step: str
) -> dict[str, PromptTemplate]:
    """The step's `prompts` setting, each role checked against the variables it may use."""
    names = settings.get("prompts") or {}
    missing = sorted(set(variables) - set(names))
    if missing:
        raise ConfigError(
            f"stage.steps.{step}.prompts: no file for role(s) {missing}. Fix: add "
            f"`prompts: {{{missing[0]}: <file>}}` (shipped prompts are in {SHIPPED_PROMPTS})."
        )
    prompts = {}
    for role, available in variables.items():
        template = PromptTemplate.load(role, str(names[role]), f"stage.steps.{step}.prompts.{role}")
        template.check(available)
        prompts[role] = template
    return prompts
