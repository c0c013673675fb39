"""Rebuild the example charts of docs/reports.md: an example store (1,500 calls in 150 runs over 7 days, written
the way mltrack's writer writes them; see benchmarks/bench_report.py), then ``mltrack report --plot``.

Usage (from the repository root): ``MLFLOW_DISABLE_TELEMETRY=true python docs/img/make_report_images.py``
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE.parent.parent / "benchmarks")]
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

from bench_report import build_store  # noqa: E402
from PIL import Image  # noqa: E402

from mltrack.cli.main import main as mltrack_cli  # noqa: E402


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="mltrack-doc-images-") as tmp:
        uri, calls = build_store(Path(tmp), runs=150, per_run=10, seed=11)
        out = HERE / "report"
        code = mltrack_cli(["report", "--tracking-uri", uri, "--plot", str(out)])
        for png in sorted(out.glob("*.png")):  # a 128-colour palette keeps them small in the repository
            Image.open(png).convert("RGB").quantize(colors=128).save(png, optimize=True)
            print(f"{png.relative_to(HERE.parent.parent)}: {png.stat().st_size // 1024} KiB")
    return code


if __name__ == "__main__":
    sys.exit(main())
