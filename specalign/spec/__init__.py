"""Specs: the documents that every method starts from."""

from specalign.spec.spec import Spec, load_spec, resolve_spec_file

__all__ = ["Spec", "load_spec", "resolve_spec_file"]
