"""specalign: specification-grounded alignment (SpecAlign, MSM, TRACE) on a cached stage graph."""

from importlib.resources import files
from pathlib import Path

__version__ = "0.1.0"

# The Hydra config tree. In a checkout, specalign/conf is a symlink to the repository's
# top-level conf/ (where users read and edit it); a wheel ships the YAML under that name.
CONF = Path(str(files("specalign") / "conf"))
