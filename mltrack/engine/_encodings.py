"""Resolve tiktoken encodings: tiktoken's own loader, else bpe-openai's bundled copy, else a rough heuristic."""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import os
import threading
import types
import uuid
from pathlib import Path
from typing import Any, Callable, NamedTuple

from mltrack._safety import warn_once

Counter = Callable[[str], int]

OFFLINE_ENCODINGS: tuple[str, ...] = ("cl100k_base", "o200k_base")
OFFLINE_EXTRA_HINT = 'pip install "mltrack[offline]"'

TIKTOKEN_WAIT_SECONDS = 10.0

SOURCE_TIKTOKEN = "tiktoken"
SOURCE_BPE_OPENAI = "bpe-openai"
SOURCE_HEURISTIC = "heuristic"

_counters: dict[str, Counter] = {}
_sources: dict[str, str] = {}
_store_lock = threading.Lock()
_resolve_lock = threading.Lock()


class EncodingSource(NamedTuple):
    """Where tiktoken downloads an encoding from, and the sha256 it expects."""

    url: str
    sha256: str


class _Captured(Exception):
    def __init__(self, source: EncodingSource) -> None:
        super().__init__(source.url)
        self.source = source


def heuristic_count(text: str) -> int:
    """About four characters per token, rounded up."""
    return (len(text) + 3) // 4


def counter_for(name: str) -> Counter:
    """The token counter for encoding ``name``, resolved once per process."""
    counter = _counters.get(name)
    return counter if counter is not None else _resolve(name)


def source_of(name: str) -> str | None:
    """Which path serves ``name`` so far: "tiktoken", "bpe-openai", "heuristic", or None if unresolved."""
    return _sources.get(name)


def reset_for_tests() -> None:
    """Forget every resolved encoding."""
    with _store_lock:
        _counters.clear()
        _sources.clear()


def _store(name: str, counter: Counter, source: str, *, replace: bool) -> Counter:
    with _store_lock:
        if not replace and name in _counters:
            return _counters[name]
        _counters[name] = counter
        _sources[name] = source
        return counter


def _encoding_counter(encoding: Any) -> Counter:
    encode = encoding.encode_ordinary
    return lambda text: len(encode(text))


def _resolve(name: str) -> Counter:
    with _resolve_lock:
        counter = _counters.get(name)
        if counter is not None:
            return counter
        encoding, tiktoken_error = _from_tiktoken(name)
        if encoding is not None:
            return _store(name, _encoding_counter(encoding), SOURCE_TIKTOKEN, replace=True)
        encoding, offline_error = _from_bpe_openai(name)
        if encoding is not None:
            warn_once("tokens.offline_encoding",
                      f"mltrack: tiktoken could not load {name} ({tiktoken_error}); counting tokens with the "
                      "hash-verified copy shipped by bpe-openai. To use tiktoken's own cache, point "
                      "TIKTOKEN_CACHE_DIR at a directory filled by "
                      "mltrack.engine.tokens.provision_offline_encodings().")
            return _store(name, _encoding_counter(encoding), SOURCE_BPE_OPENAI, replace=False)
        warn_once("tokens.heuristic",
                  f"mltrack: no tokenizer for {name} is available (tiktoken: {tiktoken_error}; offline copy: "
                  f"{offline_error}); locally counted tokens are rough estimates (~4 characters per token). "
                  f"Fix: {OFFLINE_EXTRA_HINT}, or let tiktoken download its encodings once "
                  "(or set TIKTOKEN_CACHE_DIR to a directory that holds them).")
        return _store(name, heuristic_count, SOURCE_HEURISTIC, replace=False)


def _from_tiktoken(name: str) -> tuple[Any, str | None]:
    """tiktoken.get_encoding in a worker thread, awaited TIKTOKEN_WAIT_SECONDS; a late success still wins."""
    try:
        import tiktoken
    except ImportError as exc:
        return None, f"tiktoken is not importable ({exc})"
    outcome: dict[str, tuple[Any, str | None]] = {}
    abandoned = False
    handoff = threading.Lock()
    done = threading.Event()

    def load() -> None:
        try:
            result: tuple[Any, str | None] = (tiktoken.get_encoding(name), None)
        except Exception as exc:  # noqa: BLE001 - any failure means "try the next path"
            result = (None, _describe(exc))
        with handoff:
            outcome["result"] = result
            late = abandoned
            done.set()
        if late and result[0] is not None:
            _store(name, _encoding_counter(result[0]), SOURCE_TIKTOKEN, replace=True)

    threading.Thread(target=load, name=f"mltrack-tiktoken-{name}", daemon=True).start()
    done.wait(TIKTOKEN_WAIT_SECONDS)
    with handoff:
        if "result" in outcome:
            return outcome["result"]
        abandoned = True
    return None, f"no answer within {TIKTOKEN_WAIT_SECONDS:g}s (download blocked?)"


def tiktoken_source(name: str) -> EncodingSource:
    """The download URL and expected sha256 that tiktoken's own constructor uses for ``name``."""

    def capture(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        raise _Captured(EncodingSource(url, expected_hash or ""))

    try:
        _run_tiktoken_constructor(name, capture)
    except _Captured as captured:
        return captured.source
    raise LookupError(f"tiktoken's constructor for {name} does not load a .tiktoken file")


def _run_tiktoken_constructor(name: str, load_ranks: Callable[..., dict[bytes, int]]) -> dict[str, Any]:
    """Call tiktoken's constructor for ``name`` with its ``load_tiktoken_bpe`` replaced by ``load_ranks``."""
    from tiktoken_ext import openai_public

    original = openai_public.ENCODING_CONSTRUCTORS[name]
    globals_ = {**original.__globals__, "load_tiktoken_bpe": load_ranks}
    rebound = types.FunctionType(original.__code__, globals_, original.__name__,
                                 original.__defaults__, original.__closure__)
    return rebound()


def bpe_openai_data_dir() -> Path | None:
    """bpe-openai's data folder, found without importing the package (its native module is large)."""
    try:
        spec = importlib.util.find_spec("bpe_openai")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        data = Path(location) / "data"
        if data.is_dir():
            return data
    return None


def verified_offline_bytes(name: str, source: EncodingSource, data_dir: Path) -> bytes:
    """Decompress bpe-openai's copy of ``name`` and check it against tiktoken's expected sha256."""
    archive = data_dir / f"{name}.tiktoken.gz"
    if not archive.is_file():
        raise FileNotFoundError(f"bpe-openai has no {archive.name} in {data_dir}")
    contents = gzip.decompress(archive.read_bytes())
    actual = hashlib.sha256(contents).hexdigest()
    if actual != source.sha256:
        raise ValueError(f"{archive} does not match tiktoken's expected sha256 {source.sha256} (got {actual})")
    return contents


def parse_ranks(contents: bytes) -> dict[bytes, int]:
    """Parse a .tiktoken file: one ``base64(token) rank`` pair per line."""
    ranks: dict[bytes, int] = {}
    for line in contents.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _from_bpe_openai(name: str) -> tuple[Any, str | None]:
    data_dir = bpe_openai_data_dir()
    if data_dir is None:
        return None, f"bpe-openai is not installed ({OFFLINE_EXTRA_HINT})"
    try:
        import tiktoken

        def load_ranks(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
            source = EncodingSource(url, expected_hash or "")
            return parse_ranks(verified_offline_bytes(_file_stem(url), source, data_dir))

        return tiktoken.Encoding(**_run_tiktoken_constructor(name, load_ranks)), None
    except Exception as exc:  # noqa: BLE001 - fall through to the heuristic, reason reported
        return None, _describe(exc)


def _describe(exc: BaseException, limit: int = 200) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _file_stem(url: str) -> str:
    return url.rsplit("/", 1)[-1].removesuffix(".tiktoken")


def tiktoken_cache_key(url: str) -> str:
    """The file name tiktoken's read_file_cached uses for ``url``: the sha1 hex of the URL."""
    return hashlib.sha1(url.encode()).hexdigest()


def provision(cache_dir: str | os.PathLike[str]) -> list[str]:
    """Write bpe-openai's encodings into ``cache_dir`` under tiktoken's cache names; return the names written."""
    data_dir = bpe_openai_data_dir()
    if data_dir is None:
        raise ImportError("mltrack: offline token encodings need the bpe-openai package; "
                          f"install it with: {OFFLINE_EXTRA_HINT}")
    target = Path(cache_dir)
    target.mkdir(parents=True, exist_ok=True)
    provisioned: list[str] = []
    for name in OFFLINE_ENCODINGS:
        if not (data_dir / f"{name}.tiktoken.gz").is_file():
            continue
        source = tiktoken_source(name)
        path = target / tiktoken_cache_key(source.url)
        if not (path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == source.sha256):
            contents = verified_offline_bytes(name, source, data_dir)
            partial = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
            try:
                partial.write_bytes(contents)
                os.replace(partial, path)
            finally:
                partial.unlink(missing_ok=True)
        provisioned.append(name)
    if not provisioned:
        raise FileNotFoundError(f"bpe-openai at {data_dir} ships none of {', '.join(OFFLINE_ENCODINGS)}")
    return provisioned
