"""`python -m specalign`: the Hydra entry point (see specalign.app)."""

from specalign.app import main

if __name__ == "__main__":
    main()
