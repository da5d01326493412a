"""``python -m datapunk``: the command line."""

from __future__ import annotations

import sys

from datapunk.cli import main

if __name__ == "__main__":
    sys.exit(main())
