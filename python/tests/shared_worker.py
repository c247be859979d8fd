"""One process of the shared-root tests: writes keys whose values carry their checksum through
the module-level cache, recording each key after its write is acknowledged, and checks every
value it reads back; until `count` keys or until the file STOP exists.

    python shared_worker.py ROOT WORKER COUNT ACKS STOP

Prints `role <serving|client>` once the cache is open and `done <role>` at the end."""

import os
import random
import sys
import zlib

import leafcache


def value_for(key: str, n: int) -> str:
    body = f"{key}:{n}:" + "x" * (n % 97)
    return f"{body}:{zlib.crc32(body.encode()):08x}"


def check(key: str, value: str) -> None:
    body, _, crc = value.rpartition(":")
    if f"{zlib.crc32(body.encode()):08x}" != crc or not body.startswith(key + ":"):
        print(f"corrupt {key} {value!r}", flush=True)
        sys.exit(3)


def main() -> None:
    root, worker, count, acks, stop = sys.argv[1:6]
    count = int(count)
    cache = leafcache.init("load", root=root, flush="always", takeover_timeout=30)
    print(f"role {cache.role}", flush=True)
    fd = os.open(acks, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    written = []
    for n in range(count):
        key = f"w{worker}-{n}"
        leafcache.set(key, value_for(key, n))
        os.write(fd, f"{key}\n".encode())  # one write(2) per line: whole lines, even on a kill
        written.append(key)
        if n % 50 == 0 and os.path.exists(stop):
            break
        if n % 10 == 0:
            probe = random.choice(written)
            got = leafcache.get(probe)
            if got is None:
                print(f"lost {probe}", flush=True)
                sys.exit(4)
            check(probe, got)
    os.close(fd)
    print(f"done {cache.role}", flush=True)


if __name__ == "__main__":
    main()
