"""Which MLflow store a run's records go to: its tracking URI, resolved once, when the run is opened or picked up.

Resolved in the application (where the user may have called ``mlflow.set_tracking_uri``) and made absolute, so
the writer, in another process and another working directory, writes to the same place.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def resolve(uri: str | None) -> str:
    """``uri`` (configured in .mltrack.yml or ``configure``), else MLflow's current tracking URI in this process
    (``mlflow.set_tracking_uri`` wins over ``MLFLOW_TRACKING_URI``, as in MLflow), else ``MLFLOW_TRACKING_URI``,
    else MLflow's default (a SQLite file in the working directory); made absolute."""
    if uri and uri == os.environ.get("MLFLOW_TRACKING_URI"):
        uri = None  # from the environment, which mlflow.set_tracking_uri overrides in MLflow itself
    if not uri:
        mlflow = sys.modules.get("mlflow")
        if mlflow is not None and not getattr(getattr(mlflow, "__spec__", None), "_initializing", False):
            try:
                uri = mlflow.get_tracking_uri()
            except Exception:  # noqa: BLE001 - a half-imported or broken mlflow: fall back to the environment
                uri = None
    if not uri:
        uri = os.environ.get("MLFLOW_TRACKING_URI") or _mlflow_default()
    return absolute(uri)


def _mlflow_default() -> str:
    """MLflow's own default: ``./mlruns`` if it already holds data, else ``sqlite:///mlflow.db``."""
    mlruns = Path("mlruns")
    try:
        if mlruns.is_dir() and any((entry / "meta.yaml").exists() for entry in mlruns.iterdir() if entry.is_dir()):
            return mlruns.resolve().as_uri()
    except OSError:
        pass
    return "sqlite:///mlflow.db"


def absolute(uri: str) -> str:
    """A local store's URI with its path made absolute (from this process's working directory)."""
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):]
        if path and path != ":memory:" and not os.path.isabs(path):
            return "sqlite:///" + os.path.abspath(path).replace(os.sep, "/")
        return uri
    if uri.startswith("file:"):
        path = uri[len("file:"):]
        if path.startswith("//"):
            return uri
        return Path(os.path.abspath(path)).as_uri()
    if "://" not in uri and ":" not in uri[2:]:  # a plain folder: MLflow's file store
        return Path(os.path.abspath(uri)).as_uri()
    return uri


def local_problem(uri: str) -> str | None:
    """Why a local SQLite store cannot be written, found without MLflow (its folder is missing or read-only), or
    None. Lets a process warn at once instead of after the writer process has started and tried."""
    if not uri.startswith("sqlite:///"):
        return None
    path = Path(uri[len("sqlite:///"):])
    if str(path) in ("", ":memory:") or path.exists():
        return None
    folder = path.parent
    if not folder.is_dir():
        return f"{folder} is not a folder"
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return f"cannot create {path.name} in {folder}: {exc.strerror or exc}"
    return None
