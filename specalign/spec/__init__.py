"""Specs: the documents that every method starts from, parsed into rules."""

from specalign.spec.model import Annotation, Rule
from specalign.spec.spec import (
    Spec,
    load_named_spec,
    load_spec,
    load_spec_file,
    resolve_spec_file,
)

__all__ = [
    "Annotation",
    "Rule",
    "Spec",
    "load_named_spec",
    "load_spec",
    "load_spec_file",
    "resolve_spec_file",
]
