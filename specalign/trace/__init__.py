"""TRACE (RESEARCH.md s.3): re-align a model from its existing preference data when the spec
changes. `triage` labels each pair against the new spec (INVERT / PUNISH / RETAIN), `impact`
weights the conflicts by a first-order alignment impact score, `trainer` re-aligns with the
hybrid invert / unlearn / retain objective, and `variants` maps the baselines and
ablations (conf/trace/) onto the same objective."""
