"""Kept so that the commands recorded in docs/reports/*-single/source.json still run: the
baseline is now `cofc baseline BUILD_DIR` (compiler/cluster/baseline.py), which this calls.

  python tools/baseline.py build/minilm-20ng     # = cofc baseline build/minilm-20ng
"""

from __future__ import annotations

import sys

from cofc.cli import main

if __name__ == "__main__":
    sys.argv[1:1] = ["baseline"]
    main()
