"""Instance sampling: the SpecAlign constraints hold for any pool and any seed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from specalign.spec.instances import DEFAULT_ORDER, ORDER_KEYS, sample_instances
from specalign.spec.model import PRIORITIES, Annotation

STAGES = ("request", "response", "conversation")


@st.composite
def annotation_pools(draw, rich: bool = False) -> list[Annotation]:
    """Random annotated rules; `rich` pools give every domain three rules per (stage,
    direction), so full coverage and a balanced 13-rule instance are always feasible."""
    domains = [f"d{i}" for i in range(draw(st.integers(1, 6)))]
    families = [f"f{i}" for i in range(draw(st.integers(1, 8)))]
    specs = []
    if rich:
        specs = [(s, d, dom) for dom in domains for s in STAGES for d in ("do", "dont")]
        specs = [x for x in specs for _ in range(3)]
    extra = draw(
        st.lists(
            st.tuples(
                st.sampled_from(STAGES), st.sampled_from(["do", "dont"]), st.sampled_from(domains)
            ),
            min_size=0 if rich else 1,
            max_size=40,
        )
    )
    pool = []
    for i, (stage, direction, domain) in enumerate([*specs, *extra]):
        pool.append(
            Annotation(
                rule_id=f"R{i}",
                direction=direction,
                stage=stage,
                domain=domain,
                family=draw(st.sampled_from(families)),
                priority=draw(st.sampled_from(PRIORITIES)),
                has_exception=draw(st.booleans()),
                specificity=draw(st.floats(0, 1)),
            )
        )
    return pool


def by_id(pool: list[Annotation]) -> dict[str, Annotation]:
    return {a.rule_id: a for a in pool}


@settings(max_examples=150, deadline=None)
@given(
    pool=annotation_pools(),
    seed=st.integers(0, 10**6),
    bounds=st.tuples(st.integers(1, 13), st.integers(0, 6)),
)
def test_size_balance_uniqueness_and_order_for_any_pool(pool, seed, bounds):
    low, extra = bounds
    high = low + extra
    index = by_id(pool)
    for inst in sample_instances(pool, 3, min_rules=low, max_rules=high, seed=seed):
        chosen = [index[r] for r in inst.rule_ids]
        assert len(set(inst.rule_ids)) == len(inst.rule_ids)
        assert min(low, len(pool)) <= len(chosen) <= min(high, len(pool))
        n_do = sum(a.direction == "do" for a in chosen)
        n_dont = len(chosen) - n_do
        left_do = sum(a.direction == "do" for a in pool) - n_do
        left_dont = sum(a.direction == "dont" for a in pool) - n_dont
        # balanced, unless the minority kind has been used up entirely
        assert (
            abs(n_do - n_dont) <= 1
            or (n_do < n_dont and left_do == 0)
            or (n_dont < n_do and left_dont == 0)
        )
        keys = [tuple(ORDER_KEYS[k](a) for k in DEFAULT_ORDER) for a in chosen]
        assert keys == sorted(keys), "not in lexicographic priority order"


@settings(max_examples=100, deadline=None)
@given(pool=annotation_pools(rich=True), seed=st.integers(0, 10**6))
def test_coverage_when_the_spec_allows_it(pool, seed):
    index = by_id(pool)
    n_domains = len({a.domain for a in pool})
    n_families = len({a.family for a in pool})
    for inst in sample_instances(pool, 3, min_rules=8, max_rules=13, seed=seed):
        chosen = [index[r] for r in inst.rule_ids]
        assert {a.stage for a in chosen} == set(STAGES), "a stage is missing"
        assert abs(sum(a.direction == "do" for a in chosen) * 2 - len(chosen)) <= 1
        # stage picks come first and may repeat a domain at most (stages - 1) times
        assert len({a.domain for a in chosen}) >= min(n_domains, len(chosen)) - 2
        # the families that can still be added are not skipped for repeats
        assert len({a.family for a in chosen}) >= min(n_families, len(chosen)) - 2 - 2


@settings(max_examples=20, deadline=None)
@given(pool=annotation_pools(rich=True))
def test_seeded_and_reproducible(pool):
    first = sample_instances(pool, 5, seed=7)
    assert first == sample_instances(pool, 5, seed=7)
    assert first[:2] == sample_instances(pool, 2, seed=7), "instance i depends on (seed, i) only"
    other = sample_instances(pool, 5, seed=8)
    assert [i.rule_ids for i in first] != [i.rule_ids for i in other]
