"""`python -m specalign.spec`: see specalign.spec.cli."""

import sys

from specalign.spec.cli import main

if __name__ == "__main__":
    sys.exit(main())
