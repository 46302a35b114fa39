"""specalign: specification-grounded alignment (SpecAlign, MSM, TRACE) on a cached stage graph."""

__version__ = "0.1.0"
