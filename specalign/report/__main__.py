"""`python -m specalign.report DIR`: the report of a sweep (a `--multirun` directory) or of
one run: report.md and figures/ in DIR (or --out), and a W&B `report` run when the members
logged to W&B (--no-wandb: files only). Written automatically at the end of a --multirun."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from specalign.errors import SpecAlignError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m specalign.report", description=__doc__)
    parser.add_argument("directory", type=Path, help="a multirun or run directory")
    parser.add_argument("--out", type=Path, help="where report.md and figures/ go (default: DIR)")
    parser.add_argument("--no-wandb", action="store_true", help="do not log a W&B report run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from specalign.report.build import write_report
    from specalign.report.members import load_sweep

    try:
        sweep = load_sweep(args.directory)
        logger = next((m.summary.get("logger") for m in sweep.members if m.summary), None)
        report = write_report(sweep, args.out, None if args.no_wandb else logger)
    except SpecAlignError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    print(report.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
