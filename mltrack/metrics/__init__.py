"""Live Prometheus metrics of LLM calls, beside MLflow (CONTRACT §8): ``enable_prometheus`` and the config hook.

The feed is an observer of the engine (:mod:`mltrack.engine.observers`): every priced call, whatever entry point
made it and whichever thread priced it, updates the metrics once. ``prometheus_client`` is imported only when
the metrics are enabled; a missing package is an ImportError naming the ``mltrack[prometheus]`` extra.
"""

from __future__ import annotations

import threading
from typing import Any

from mltrack import _safety
from mltrack.engine import observers
from mltrack.metrics._instruments import Instruments, import_client, multiprocess_dir
from mltrack.metrics._models import ModelLabels

_lock = threading.RLock()
_feed: Instruments | None = None  # the instruments calls currently go to
_auto_started = False


def enable_prometheus(port: int | None = None, addr: str = "127.0.0.1", registry: Any = None) -> Any:
    """Register mltrack's metrics into ``registry`` (default ``prometheus_client.REGISTRY``), serve them on
    ``addr:port`` when ``port`` is given, and return the registry. Idempotent; calls feed the latest registry.

    With ``PROMETHEUS_MULTIPROC_DIR`` set, the values go to prometheus-client's multiprocess files, and the returned
    registry (``registry``, or a new one) holds a ``MultiProcessCollector`` that aggregates every process.
    """
    if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 0 < port <= 65535):
        raise ValueError(f"enable_prometheus: port must be an integer from 1 to 65535 or None, got {port!r}")
    if not isinstance(addr, str) or not addr:
        raise ValueError(f"enable_prometheus: addr must be a non-empty string (e.g. '127.0.0.1'), got {addr!r}")
    if registry is not None and not callable(getattr(registry, "register", None)):
        raise TypeError(f"enable_prometheus: registry must be a prometheus_client CollectorRegistry, got "
                        f"{type(registry).__name__}")
    client = import_client()
    global _feed
    with _lock:
        multiprocess = multiprocess_dir() is not None
        target = registry
        if target is None:
            if not multiprocess:
                target = client.REGISTRY
            elif _feed is not None and _feed.multiprocess and _feed.own_registry:
                target = _feed.registry
            else:
                target = client.CollectorRegistry()
        if _feed is None or _feed.registry is not target:
            from mltrack.config import get_settings

            feed = Instruments(target, multiprocess, ModelLabels(get_settings().prometheus_max_models))
            feed.own_registry = registry is None
            if multiprocess:
                client.multiprocess.MultiProcessCollector(target)
            if _feed is not None:
                observers.unsubscribe(_feed.observe)
                _feed.unregister()
            _feed = feed
            observers.subscribe(feed.observe)
        if port is not None:
            from mltrack.metrics._serve import serve

            serve(target, addr, port)
    return target


def enable_from_settings(settings: Any) -> None:
    """``prometheus_enabled: true`` in the config: enable once, at the first tracked call. Never raises: a missing
    package is one warning with the install hint, any other failure goes through the safety net."""
    global _auto_started
    if _auto_started:
        return
    with _lock:
        if _auto_started:
            return
        _auto_started = True
    try:
        enable_prometheus(port=settings.prometheus_port, addr=settings.prometheus_addr)
    except ImportError as exc:
        _safety.warn_once("prometheus:missing", f"{exc} (prometheus_enabled is true)", _safety.TrackingWarning)
    except Exception as exc:  # noqa: BLE001 - tracking never breaks the user's code
        _safety.report_internal_error("starting the Prometheus metrics", exc)


def _reset_for_tests() -> None:
    """Stop feeding metrics, take them out of their registry and stop the servers (tests only)."""
    global _feed, _auto_started
    from mltrack.metrics._serve import stop_all

    with _lock:
        if _feed is not None:
            observers.unsubscribe(_feed.observe)
            _feed.unregister()
        _feed, _auto_started = None, False
    stop_all()


__all__ = ["enable_prometheus"]
