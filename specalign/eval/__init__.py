"""Evaluations derived from specs; each evaluator returns flat metrics plus per-item rows."""
