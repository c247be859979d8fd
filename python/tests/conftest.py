"""Helpers for the package's tests: polling with a deadline, the `leafcache` binary, a TCP proxy
that can cut a link, and child processes that are always reaped."""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]


def wait_for(predicate: Callable[[], object], timeout: float = 15.0, what: str = "condition"):
    """Polls `predicate` until it returns something truthy; fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


@pytest.fixture(scope="session")
def leafcache_bin() -> Path:
    """The `leafcache` command: $LEAFCACHE_BIN, else built from this repository."""
    given = os.environ.get("LEAFCACHE_BIN")
    if given:
        return Path(given)
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.fail("cargo is needed to build the leafcache command (or set LEAFCACHE_BIN)")
    subprocess.run([cargo, "build", "--quiet", "--bin", "leafcache"], cwd=REPO, check=True)
    return REPO / "target" / "debug" / "leafcache"


class Processes:
    """Child processes that are killed and reaped when the test ends, whatever happened."""

    def __init__(self) -> None:
        self.children: List[subprocess.Popen] = []

    def start(self, args: List[str], **kwargs) -> subprocess.Popen:
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        kwargs.setdefault("text", True)
        child = subprocess.Popen(args, **kwargs)
        self.children.append(child)
        return child

    def python(self, script: Path, *args: str, **kwargs) -> subprocess.Popen:
        return self.start([sys.executable, str(script), *args], **kwargs)

    def close(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.wait(timeout=10)
            for stream in (child.stdout, child.stderr):
                if stream is not None:
                    stream.close()


@pytest.fixture
def processes() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        procs.close()


class CutProxy:
    """A TCP proxy in front of `target` that can cut every connection through it and refuse new
    ones until healed: a network partition on one host."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.open = True
        self.pairs: List[tuple] = []
        self.lock = threading.Lock()
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 0.5)
                if not self.open or self.stopped:
                    break
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def cut(self) -> None:
        self.open = False
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for a, b in pairs:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def heal(self) -> None:
        self.open = True

    def close(self) -> None:
        self.stopped = True
        self.cut()
        self.listener.close()


@pytest.fixture
def proxy_factory() -> Iterator[Callable[[str], CutProxy]]:
    made: List[CutProxy] = []

    def make(target: str) -> CutProxy:
        p = CutProxy(target)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def free_root(tmp_path: Path, name: str = "root") -> Path:
    """A root directory with a short path: Unix socket paths are limited to 107 bytes."""
    path = tmp_path / name
    if len(str(path)) > 90:
        import tempfile

        path = Path(tempfile.mkdtemp(prefix="lc-")) / name
    return path


def read_line(stream, timeout: float = 30.0) -> Optional[str]:
    """One line from a child's stdout, or None if it closed or `timeout` passed."""
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        return None
    line = stream.readline()
    return line or None
