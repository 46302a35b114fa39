"""Entry-point overhead and cache effectiveness, measured in one run on one machine.

Rows (each a fresh `python -m specalign` process, median of --repeat runs where cheap):
  interpreter   `python -c pass`: the floor no entry point can beat
  import        `import specalign.app` (torch, transformers, hydra)
  plan          `python -m specalign dry_run=true`: compose + plan, nothing to run
  first run     the pipeline from an empty store (GGUF conversion in its own row)
  cached re-run the identical command again: every step reused
Ratios are against the first run. Usage:
  python benchmarks/bench_entrypoint.py [--repeat 3] [-- extra overrides]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return elapsed


def median(cmd: list[str], repeat: int) -> float:
    return statistics.median(timed(cmd) for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="extra overrides for the pipeline runs")
    args = parser.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="specalign-bench-") as root:
        app = [py, "-m", "specalign", f"paths.root={root}", "logger=none", *args.overrides]
        rows = {
            "interpreter": median([py, "-c", "pass"], args.repeat),
            "import": median([py, "-c", "import specalign.app"], args.repeat),
            "plan (dry_run)": median([*app, "dry_run=true"], args.repeat),
        }
        convert = [
            py,
            "-c",
            "from omegaconf import OmegaConf; from hydra.utils import instantiate;"
            f"b = instantiate(OmegaConf.load('conf/backbone/smollm2_135m.yaml'),"
            f" cache_dir='{root}/cache'); b.model_path",
        ]
        rows["GGUF conversion (once)"] = timed(convert)
        rows["first run"] = timed(app)
        rows["cached re-run"] = median(app, args.repeat)
    first = rows["first run"]
    print(f"{'what':<24}{'seconds':>10}{'x first run':>14}")
    for name, seconds in rows.items():
        print(f"{name:<24}{seconds:>10.2f}{seconds / first:>14.3f}")
    print(
        f"\ncached re-run is {first / rows['cached re-run']:.1f}x faster than the first run;"
        f" plan overhead over bare import: {rows['plan (dry_run)'] - rows['import']:.2f}s"
    )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "entrypoint.json"
    out.write_text(json.dumps({"seconds": rows, "overrides": args.overrides}, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
