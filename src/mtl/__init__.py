"""mtl: should these tasks be learned jointly, sequentially or alone? Measure it."""

__version__ = "0.1.0"
