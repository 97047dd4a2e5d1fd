"""cofc: the CoFormer compiler (host side: cofc.compiler) and its device runtime (cofc.runtime)."""

__version__ = "0.1.0"
