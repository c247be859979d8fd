"""Type stubs of the leafcache._native extension (the Rust core's caches)."""

from os import PathLike
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar, Union

__version__: str

Key = Union[str, bytes]
Seconds = Union[int, float, str]
Address = Union[Tuple[str, Union[int, str]], List[Union[str, int]], str]
Amount = Union[int, float]
_Self = TypeVar("_Self")

class LeafcacheError(Exception):
    """A cache operation failed: the cache is closed, the serving process is unreachable, or
    the core refused it."""

def init_logging(level: str, root: Optional[str] = None) -> None:
    """Sets the core's log level ("debug", "info", "warning", "error", "critical"; any case);
    records go to standard error, to Python's `logging` (logger "leafcache") and, with `root`,
    to leafcache-python.log under it (0600, rotated). Each call changes both."""

class LRUCache:
    """A local LRU cache with time expiration and an optional load callback."""

    def __init__(
        self,
        load_callback: Optional[Callable[[Key], Any]] = None,
        maximum_capacity: int = 100_000,
        expiration_time: Optional[Seconds] = None,
        *,
        max_bytes: Optional[int] = None,
        eviction: str = "lru",
        serializer: str = "json",
        decode: bool = True,
    ) -> None: ...
    def get(self, key: Key, default: Any = None) -> Any: ...
    def set(self, key: Key, value: Any, ttl: Optional[Seconds] = None) -> None: ...
    def delete(self, key: Key) -> bool: ...
    def pop(self, key: Key, default: Any = None) -> Any: ...
    def incr(self, key: Key, amount: Optional[Amount] = None) -> Amount: ...
    def clear(self) -> None: ...
    def stats(self) -> Dict[str, int]: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    def __enter__(self: _Self) -> _Self: ...
    def __exit__(self, *exc: Any) -> bool: ...
    def __getitem__(self, key: Key) -> Any: ...
    def __setitem__(self, key: Key, value: Any) -> None: ...
    def __delitem__(self, key: Key) -> None: ...
    def __contains__(self, key: Key) -> bool: ...
    def __len__(self) -> int: ...

class LRUCacheDistributed(LRUCache):
    """An LRUCache on a node linked to others: a leaf of `remote_address`, a hub on
    `local_address`, or both."""

    def __init__(
        self,
        load_callback: Optional[Callable[[Key], Any]] = None,
        maximum_capacity: int = 100_000,
        expiration_time: Optional[Seconds] = None,
        connection_timeout: Optional[Seconds] = None,
        remote_address: Optional[Address] = None,
        local_address: Optional[Address] = None,
        *,
        secret: Optional[str] = None,
        name: Optional[str] = None,
        root: Optional[Union[str, PathLike]] = None,
        cluster: Optional[str] = None,
        flush: Optional[str] = None,
        snapshot: Optional[Seconds] = None,
        max_bytes: Optional[int] = None,
        eviction: str = "lru",
        serializer: str = "json",
        decode: bool = True,
        shards: Optional[Dict[str, List[Address]]] = None,
        shard: Optional[str] = None,
    ) -> None: ...
    @property
    def address(self) -> Optional[str]: ...
    @property
    def name(self) -> str: ...
    @property
    def connected(self) -> bool: ...
    def links(self) -> List[Dict[str, Any]]: ...

class SharedCache:
    """The module-level cache: shared by every process that opens the same root."""

    def __init__(
        self,
        name: str = "default",
        root: Optional[Union[str, PathLike]] = None,
        *,
        expires: Optional[Seconds] = None,
        snapshot: Optional[Seconds] = None,
        flush: str = "always",
        maximum_capacity: int = 100_000,
        max_bytes: Optional[int] = None,
        eviction: str = "lru",
        serializer: str = "json",
        decode: bool = True,
        takeover_timeout: Optional[Seconds] = None,
    ) -> None: ...
    def get(self, key: Key, default: Any = None) -> Any: ...
    def set(self, key: Key, value: Any, ttl: Optional[Seconds] = None) -> None: ...
    def delete(self, key: Key) -> bool: ...
    def pop(self, key: Key, default: Any = None) -> Any: ...
    def incr(self, key: Key, amount: Optional[Amount] = None) -> Amount: ...
    def purge(self) -> None: ...
    def close(self) -> None: ...
    @property
    def role(self) -> str: ...
    @property
    def root(self) -> Optional[PathLike]: ...
    @property
    def name(self) -> str: ...
    def __contains__(self, key: Key) -> bool: ...
    def __len__(self) -> int: ...
