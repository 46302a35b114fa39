"""Synthesized data: documents (MSM), demonstrations (AFT), adversarial pairs, triage."""
