"""leafcache: a replicated LRU cache with time expiration, on the leafcache Rust core.

Three ways to hold a cache:

* ``LRUCache`` — a local LRU cache in this process (capacity, TTL, load callback).
* ``LRUCacheDistributed`` — the same on a node that links to other nodes (Python or the
  ``leafcache`` command): a leaf of ``remote_address``, a hub on ``local_address``.
* the module-level cache — ``leafcache.init(...)`` then ``leafcache.set/get/pop/purge`` — shared
  by every process that inits the same ``root``; ``leafcache.start(host, port)`` serves it over
  HTTP (``/get?key=``, ``/set?key=&value=``) until Ctrl-C, ``start_background`` without blocking.

Values: ``str`` and ``bytes`` are stored as they are (Redis clients and ``curl`` read them);
other objects go through the cache's serializer, ``"json"`` (default) or ``"pickle"``.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
from typing import Any, Optional, Union

from ._native import (
    LRUCache,
    LRUCacheDistributed,
    LeafcacheError,
    SharedCache,
    __version__,
    init_logging,
)
from .rest import RestServer

_log = logging.getLogger("leafcache")

__all__ = [
    "LRUCache",
    "LRUCacheDistributed",
    "LeafcacheError",
    "SharedCache",
    "RestServer",
    "init",
    "get",
    "set",
    "pop",
    "delete",
    "incr",
    "purge",
    "start",
    "start_background",
    "cache",
    "__version__",
]

Key = Union[str, bytes]
Duration = Union[int, float, str, None]

_lock = threading.Lock()
_cache: Optional[SharedCache] = None


def init(
    name: str = "default",
    snapshot: Duration = None,
    expires: Duration = None,
    root: Optional[Union[str, os.PathLike]] = None,
    loglevel: Optional[str] = None,
    *,
    flush: str = "always",
    maximum_capacity: int = 100_000,
    max_bytes: Optional[int] = None,
    eviction: str = "lru",
    serializer: str = "json",
    decode: bool = True,
    takeover_timeout: Duration = None,
) -> SharedCache:
    """(Re)opens the module-level cache and returns it.

    ``name``: the cache's name; every process sharing a root must use the same one.
    ``snapshot``: how often the root is snapshotted ("120s"; default 5 minutes).
    ``expires``: the default time to live ("1d", seconds; default: never).
    ``root``: a directory. With one, every process of this user that inits the same root shares
    one cache: the first serves it on a Unix socket in the root, the others use that socket,
    and when the serving process exits or is killed another takes over from the root's
    snapshot and op log. Without one (and without ``LEAFCACHE_ROOT``), the cache is this
    process's own.
    ``loglevel``: the core's log level ("DEBUG", "info", "warning", ...; any case; anything
    else is a ``ValueError``): on standard error (coloured only on a terminal), to Python's
    ``logging`` (logger ``leafcache``), and with a root to ``leafcache-python.log`` under it
    (0600, rotated past 16 MiB, three kept).
    ``flush``: when the op log reaches the file — "always" (before a write is acknowledged:
    nothing acknowledged is lost to a kill), "never", or an interval such as "100ms".
    """
    global _cache
    if root is None:
        root = os.environ.get("LEAFCACHE_ROOT") or None
    if loglevel:
        init_logging(loglevel, os.fspath(root) if root is not None else None)
    with _lock:
        if _cache is not None:
            _cache.close()
            _cache = None
        _cache = SharedCache(
            name,
            os.fspath(root) if root is not None else None,
            expires=expires,
            snapshot=snapshot,
            flush=flush,
            maximum_capacity=maximum_capacity,
            max_bytes=max_bytes,
            eviction=eviction,
            serializer=serializer,
            decode=decode,
            takeover_timeout=takeover_timeout,
        )
        return _cache


def cache() -> SharedCache:
    """The module-level cache, opened with the defaults (and ``LEAFCACHE_ROOT``) if ``init`` was
    not called."""
    current = _cache
    if current is not None:
        return current
    with _lock:
        if _cache is not None:
            return _cache
    return init()


def get(key: Key, default: Any = None) -> Any:
    """The value of ``key`` in the module-level cache, or ``default``."""
    return cache().get(key, default)


def set(key: Key, value: Any, ttl: Duration = None) -> None:  # noqa: A001 - the seed's name
    """Stores ``value`` under ``key`` in the module-level cache."""
    cache().set(key, value, ttl)


def pop(key: Key, default: Any = None) -> Any:
    """Removes ``key`` from the module-level cache and returns its value, or ``default``."""
    return cache().pop(key, default)


def delete(key: Key) -> bool:
    """Removes ``key`` from the module-level cache; whether it was held."""
    return cache().delete(key)


def incr(key: Key, amount: Union[int, float] = 1) -> Union[int, float]:
    """Adds ``amount`` to the counter at ``key``; the new value."""
    return cache().incr(key, amount)


def purge() -> None:
    """Removes every entry of the module-level cache."""
    cache().purge()


def start(host: str = "127.0.0.1", port: int = 5001) -> None:
    """Serves the module-level cache over HTTP and blocks until Ctrl-C (SIGINT) or SIGTERM,
    then stops serving and returns: a script that ends with it keeps serving, as the seed's
    ``start`` did. The endpoints: ``GET /get?key=k``, ``GET|POST /set?key=k&value=v[&ttl=60]``,
    ``/pop?key=k``, ``/delete?key=k``. To serve while the script goes on, use
    :func:`start_background`."""
    server = RestServer(cache(), host, port)
    _log.info("serving the cache on %s until Ctrl-C or SIGTERM", server.url)
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.close()
        _log.info("stopped serving the cache on %s", server.url)


def start_background(host: str = "127.0.0.1", port: int = 5001) -> RestServer:
    """:func:`start` without blocking: serves the module-level cache on a background thread and
    returns the server (``.address``, ``.url``, ``.close()``, a context manager); port 0 picks a
    free port."""
    return RestServer(cache(), host, port)


@atexit.register
def _close_at_exit() -> None:
    current = _cache
    if current is not None:
        current.close()
