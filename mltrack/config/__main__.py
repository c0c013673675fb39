"""``python -m mltrack.config [REPO_ROOT]``: regenerate `.mltrack.yml.example` and the docs key table."""

from __future__ import annotations

import sys
from pathlib import Path

from .example import write_generated

if __name__ == "__main__":
    write_generated(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd())
