"""Messages between this process and its writer process: length-prefixed pickles over a pipe."""

from __future__ import annotations

import os
import pickle
import struct
from typing import Any, BinaryIO

_HEADER = struct.Struct("<I")


def send(fd: int, message: Any) -> None:
    """Write one message (the caller serializes writers to ``fd``). Raises OSError when the other end is gone."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def receive(stream: BinaryIO) -> Any:
    """Read one message; EOFError when the other end closed its side."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


def exception_blob(exc: BaseException) -> bytes:
    """An exception as bytes that unpickle on the other side (a stand-in naming it when it does not pickle)."""
    try:
        blob = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(blob)
        return blob
    except Exception:  # noqa: BLE001 - many library exceptions do not round-trip
        return pickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}"))


def exception_from(blob: bytes) -> BaseException:
    try:
        exc = pickle.loads(blob)
    except Exception as load_error:  # noqa: BLE001
        return RuntimeError(f"an error in the writer process that could not be read back ({load_error})")
    return exc if isinstance(exc, BaseException) else RuntimeError(repr(exc))
