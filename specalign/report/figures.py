"""The report's figures (matplotlib, written as PNG): what a reader would rather look at than
read. Every bar carries its 95% CI; values are drawn next to the base model's (a dashed
line), shifts next to zero; arms are colored by the sweep's first axis."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from specalign.report.arms import Arm, ArmMetric, finite

BASE_COLOR = "#7f7f7f"
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on clusters or CI
    import matplotlib.pyplot as plt

    return plt


def colors(arms: list[Arm], axes: list[str]) -> list[str]:
    """One color per value of the first axis the arms differ on; the base model gray."""
    axis = next((a for a in axes if len({arm.choices.get(a) for arm in arms}) > 1), None)
    values = list(dict.fromkeys(arm.choices.get(axis, "") for arm in arms if not arm.is_base))
    out = []
    for arm in arms:
        if arm.is_base:
            out.append(BASE_COLOR)
        else:
            out.append(PALETTE[values.index(arm.choices.get(axis, "")) % len(PALETTE)])
    return out


def error(stat: Any) -> tuple[float, float]:
    if stat is None or not (finite(stat.low) and finite(stat.high)):
        return 0.0, 0.0
    return max(stat.value - stat.low, 0.0), max(stat.high - stat.value, 0.0)


def bars(
    ax: Any, labels: list[str], stats: list[Any], palette: list[str], ref: float | None
) -> None:
    """Horizontal bars with CI whiskers; `ref` a dashed reference line (base value, or 0)."""
    ys = list(range(len(labels)))
    values = [s.value if s is not None and finite(s.value) else math.nan for s in stats]
    errs = [error(s) for s in stats]
    ax.barh(ys, values, color=palette, alpha=0.85,
            xerr=[[e[0] for e in errs], [e[1] for e in errs]], capsize=3)  # fmt: skip
    ax.set_yticks(ys, labels, fontsize=8)
    ax.invert_yaxis()
    ax.locator_params(axis="x", nbins=5)
    if ref is not None and finite(ref):
        ax.axvline(ref, color="black", linestyle="--", linewidth=0.8)
    ax.grid(axis="x", alpha=0.3)


def metric_figure(
    title: str, arms: list[Arm], metrics: list[str], axes: list[str], path: Path
) -> Path | None:
    """One row per metric: each arm's value (left, the base model's as a dashed line) and
    its shift vs the base model (right, zero dashed)."""
    metrics = [m for m in metrics if any(m in arm.metrics for arm in arms)]
    if not metrics:
        return None
    plt = pyplot()
    height = 0.6 + len(metrics) * (0.35 * len(arms) + 0.9)
    fig, grid = plt.subplots(len(metrics), 2, figsize=(11, height), squeeze=False)
    palette = colors(arms, axes)
    labels = [arm.label for arm in arms]
    for row, name in enumerate(metrics):
        got: list[ArmMetric | None] = [arm.metrics.get(name) for arm in arms]
        base = next(
            (m.stat.value for arm, m in zip(arms, got, strict=True) if arm.is_base and m), None
        )
        better = next((m.higher_is_better for m in got if m), None)
        arrow = {True: " (higher is better)", False: " (lower is better)"}.get(better, "")
        bars(grid[row][0], labels, [m.stat if m else None for m in got], palette, base)
        grid[row][0].set_title(f"{name}{arrow}", fontsize=9)
        bars(grid[row][1], labels, [m.shift if m else None for m in got], palette, 0.0)
        grid[row][1].set_title("shift vs base [95% CI]", fontsize=9)
        grid[row][1].set_yticklabels([])
    legend(grid[0][1], arms, palette)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / height))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def legend(ax: Any, arms: list[Arm], palette: list[str]) -> None:
    """Which color is which value of the coloring axis (the arms' first distinct choice)."""
    from matplotlib.patches import Patch

    seen: dict[str, str] = {}
    for arm, color in zip(arms, palette, strict=True):
        name = "base model" if arm.is_base else " ".join(f"{k}={v}" for k, v in arm.choices.items())
        seen.setdefault(color, name)
    if len(seen) > 1:
        handles = [Patch(color=c, label=n) for c, n in seen.items()]
        ax.legend(handles=handles, fontsize=7, loc="best")


def headline_figure(title: str, arms: list[Arm], metrics: list[str], path: Path) -> Path | None:
    """The preset's comparison: per arm, one bar per headline metric with its CI (left), and
    each trained arm's shift vs the base model (right)."""
    metrics = [m for m in metrics if any(m in arm.metrics for arm in arms)]
    if not metrics:
        return None
    plt = pyplot()
    width_in = max(11.0, 1.3 * len(arms) * 2 + 2)
    fig, (left, right) = plt.subplots(1, 2, figsize=(width_in, 5.2))
    width = 0.8 / len(metrics)
    xs = list(range(len(arms)))
    for k, name in enumerate(metrics):
        color = PALETTE[k % len(PALETTE)]
        offset = [x - 0.4 + width * (k + 0.5) for x in xs]
        stats = [arm.metrics[name].stat if name in arm.metrics else None for arm in arms]
        shifts = [arm.metrics[name].shift if name in arm.metrics else None for arm in arms]
        for ax, values in ((left, stats), (right, shifts)):
            ys = [s.value if s is not None and finite(s.value) else math.nan for s in values]
            errs = [error(s) for s in values]
            ax.bar(offset, ys, width=width, color=color, alpha=0.85, label=name,
                   yerr=[[e[0] for e in errs], [e[1] for e in errs]], capsize=3)  # fmt: skip
    for ax, what in ((left, "value [95% CI]"), (right, "shift vs base [95% CI]")):
        ax.set_xticks(xs, [arm.label.replace(" | ", "\n").replace(" ", "\n") for arm in arms],
                      fontsize=7)  # fmt: skip
        ax.set_title(what, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    right.axhline(0, color="black", linewidth=0.8)
    handles, names = left.get_legend_handles_labels()
    fig.legend(handles, names, loc="upper center", ncol=min(len(names), 4), fontsize=8,
               bbox_to_anchor=(0.5, 0.95), frameon=False)  # fmt: skip
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def coverage_figure(spec: str, rows: list[dict[str, Any]], columns: list[str], path: Path) -> Path:
    """Rules x artifacts: each column scaled to its own maximum (counts and rates differ),
    every cell annotated with its value; a zero (a rule no row teaches or no item tests)
    tinted red, a column the run has no artifact for left white ("-")."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.4 * len(columns) + 2.5, 0.32 * len(rows) + 1.6))
    grid = [[row.get(c) for c in columns] for row in rows]

    def number(x: Any) -> bool:
        return isinstance(x, int | float) and finite(x)

    scaled = []
    for j in range(len(columns)):
        top = max((r[j] for r in grid if number(r[j])), default=0)
        scaled.append([(r[j] / top if top else 0.0) if number(r[j]) else math.nan for r in grid])
    matrix = [[scaled[j][i] for j in range(len(columns))] for i in range(len(rows))]
    ax.imshow(matrix, cmap="Blues", aspect="auto", vmin=0, vmax=1)
    zeros = [[1.0 if v == 0 else math.nan for v in row] for row in grid]  # never taught/tested
    ax.imshow(zeros, cmap="Reds", aspect="auto", vmin=0, vmax=4)
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            text = (
                "-"
                if value is None
                else (f"{value:.2f}" if isinstance(value, float) else str(value))
            )
            dark = isinstance(matrix[i][j], float) and finite(matrix[i][j]) and matrix[i][j] > 0.6
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")  # fmt: skip
    ax.set_xticks(range(len(columns)), columns, fontsize=8, rotation=20)
    ax.set_yticks(range(len(rows)), [r["rule"] for r in rows], fontsize=7)
    ax.set_title(f"spec coverage: {spec} (rules x artifacts)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def contrast_figure(found: list[Any], path: Path) -> Path | None:
    """Each contrast's difference with its 95% CI, one point per (arm pair, metric), colored
    by metric, against a line at 0: a CI clear of the line is a difference the study shows."""
    if not found:
        return None
    plt = pyplot()
    metrics = list(dict.fromkeys(c.metric for c in found))
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(found) + 1.6))
    ys = list(range(len(found)))
    for y, c in zip(ys, found, strict=True):
        low, high = error(c.stat)
        color = PALETTE[metrics.index(c.metric) % len(PALETTE)]
        ax.errorbar(c.stat.value, y, xerr=[[low], [high]], fmt="o", color=color, capsize=3)
    ax.set_yticks(ys, [c.label.replace("  -  ", "\nminus ") for c in found], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel("difference (a minus b) [95% CI]", fontsize=8)
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=PALETTE[k % len(PALETTE)])
               for k in range(len(metrics))]  # fmt: skip
    ax.legend(handles, metrics, fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
