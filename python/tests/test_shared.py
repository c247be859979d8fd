"""The module-level cache: process-local without a root, one cache per root shared by several
processes, and a serving process killed mid-load with another taking over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import leafcache
from leafcache import LeafcacheError, SharedCache

from conftest import free_root, read_line, wait_for

WORKER = Path(__file__).with_name("shared_worker.py")


def run_python(code: str, timeout: float = 60) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_module_functions_without_a_root(monkeypatch):
    monkeypatch.delenv("LEAFCACHE_ROOT", raising=False)
    c = leafcache.init("local", expires="1d", loglevel="warn")
    assert c.role == "serving" and c.root is None and c.name == "local"
    leafcache.set("a", "b")
    assert leafcache.get("a") == "b"
    assert leafcache.get("missing", 0) == 0
    assert leafcache.incr("n", 2) == 2
    leafcache.set("obj", {"x": [1]})
    assert leafcache.pop("obj") == {"x": [1]}
    assert leafcache.pop("obj") is None
    assert leafcache.delete("a") and not leafcache.delete("a")
    leafcache.purge()
    assert len(c) == 0
    with pytest.raises(ValueError, match="name"):
        leafcache.init("")
    with pytest.raises(ValueError, match="flush"):
        leafcache.init(flush="sometimes")
    with pytest.raises(ValueError, match="invalid duration"):
        leafcache.init(expires="tomorrow")
    with pytest.raises(ValueError, match="loglevel"):
        leafcache.init(loglevel="[")
    leafcache.init("local")


def test_processes_sharing_a_root_share_one_cache(tmp_path):
    root = free_root(tmp_path)
    here = leafcache.init("shared", root=root, expires="1h")
    assert here.role == "serving"
    leafcache.set("from-parent", "p")
    # Every file under the root is its owner's alone, the settings file among them.
    files = [f for f in Path(root).rglob("*") if f.is_file()]
    assert any(f.name == "python-cache.json" for f in files), files
    for f in files:
        try:
            mode = f.stat().st_mode
        except FileNotFoundError:
            # A file written atomically (`identity.tmp`, renamed into place) may go between the
            # listing and the look.
            continue
        assert mode & 0o077 == 0, f"{f} is mode {mode & 0o777:o}"
    out = run_python(
        f"""
        import leafcache
        c = leafcache.init("shared", root={str(root)!r}, expires="1h")
        print(c.role)
        print(leafcache.get("from-parent"))
        leafcache.set("from-child", {{"n": 1}})
        print(leafcache.incr("count", 5))
        """
    )
    assert out.split() == ["client", "p", "5"]
    assert leafcache.get("from-child") == {"n": 1}
    assert leafcache.incr("count") == 6
    # An int or a float set from Python counts, here and from a client process.
    leafcache.set("zero", 0)
    assert leafcache.incr("zero") == 1
    leafcache.set("z2", 41)
    leafcache.set("half", 1.5)
    out = run_python(
        f"""
        import leafcache
        leafcache.init("shared", root={str(root)!r}, expires="1h")
        print(leafcache.incr("z2"))
        print(leafcache.incr("half", 1.0))
        """
    )
    assert out.split() == ["42", "2.5"]
    # A process that asks for another name on this root is refused, and says why.
    with pytest.raises(subprocess.CalledProcessError):
        subprocess.run(
            [sys.executable, "-c", f"import leafcache; leafcache.init('other', root={str(root)!r})"],
            check=True, capture_output=True,
        )
    bad = subprocess.run(
        [sys.executable, "-c", f"import leafcache; leafcache.init('other', root={str(root)!r})"],
        capture_output=True, text=True,
    )
    assert "same name and serializer" in bad.stderr
    here.close()
    with pytest.raises(LeafcacheError, match="closed"):
        here.get("x")
    # Closed, the root is released: the next process serves it and finds everything.
    out = run_python(
        f"""
        import leafcache
        c = leafcache.init("shared", root={str(root)!r})
        print(c.role, leafcache.get("from-parent"), leafcache.get("count"))
        """
    )
    assert out.split() == ["serving", "p", "6"]
    leafcache.init("default")


def test_a_client_takes_over_when_the_serving_process_exits(tmp_path, processes):
    root = free_root(tmp_path)
    server = processes.start(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, leafcache
            c = leafcache.init("t", root={str(root)!r})
            print(c.role, flush=True)
            leafcache.set("k", "v")
            print("ready", flush=True)
            sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE,
    )
    assert read_line(server.stdout).strip() == "serving"
    assert read_line(server.stdout).strip() == "ready"
    mine = SharedCache("t", str(root), takeover_timeout=20)
    assert mine.role == "client" and mine.get("k") == "v"
    server.kill()
    server.wait()
    # The next call finds the server gone, takes the root over and is retried.
    mine.set("after", "kill")
    assert mine.role == "serving"
    assert mine.get("k") == "v" and mine.get("after") == "kill"
    mine.close()


def test_an_increment_that_may_have_been_applied_is_not_retried(tmp_path, processes):
    root = free_root(tmp_path)
    server = processes.start(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, leafcache
            leafcache.init("t", root={str(root)!r})
            print("ready", flush=True)
            sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE,
    )
    assert read_line(server.stdout).strip() == "ready"
    mine = SharedCache("t", str(root), takeover_timeout=20)
    assert mine.incr("n") == 1
    server.kill()
    server.wait()
    with pytest.raises(LeafcacheError, match="may or may not have been applied"):
        mine.incr("n")
    assert mine.role == "serving", "the failed call still took the root over"
    assert mine.incr("n") == 2, "the increment acknowledged before the kill was kept"
    mine.close()


def test_no_process_serving_within_the_takeover_timeout_is_an_error(tmp_path):
    root = free_root(tmp_path)
    # Hold the root with a node of this process that serves no socket.
    holder = leafcache.LRUCacheDistributed(root=root)
    with pytest.raises(LeafcacheError, match="no process serves"):
        SharedCache("t", str(root), takeover_timeout=0.2)
    holder.close()


def test_four_processes_one_killed_mid_load_lose_nothing_acknowledged(tmp_path, processes):
    root = free_root(tmp_path)
    count = 10**7  # more than any worker writes before it is told to stop
    stop = tmp_path / "stop"
    acks = [tmp_path / f"acks-{i}" for i in range(4)]
    workers = [
        processes.python(WORKER, str(root), str(i), str(count), str(acks[i]), str(stop))
        for i in range(4)
    ]
    roles = {}
    for i, w in enumerate(workers):
        line = read_line(w.stdout)
        assert line and line.startswith("role "), (line, w.stderr.read() if w.poll() is not None else "")
        roles[i] = line.split()[1]
    serving = [i for i, r in roles.items() if r == "serving"]
    assert len(serving) == 1, roles
    victim = serving[0]

    def acked(i):
        try:
            return acks[i].read_text().count("\n")
        except FileNotFoundError:
            return 0

    # Mid-load: the serving process has acknowledged some writes and the others are writing.
    wait_for(lambda: acked(victim) >= 200 and all(acked(i) >= 50 for i in range(4)),
             timeout=60, what="the load to be under way")
    os.kill(workers[victim].pid, signal.SIGKILL)
    workers[victim].wait()
    at_kill = {i: acked(i) for i in range(4)}
    # The survivors go on writing through the process that took over.
    def written_on():
        for i, w in enumerate(workers):
            if i != victim and w.poll() is not None:
                raise AssertionError(f"worker {i} stopped: {w.stdout.read()} {w.stderr.read()}")
        return all(acked(i) >= at_kill[i] + 300 for i in range(4) if i != victim)

    wait_for(written_on, timeout=60, what="the survivors to write on after the takeover")
    stop.touch()

    finals = {}
    for i, w in enumerate(workers):
        if i == victim:
            continue
        out, err = w.communicate(timeout=120)
        assert w.returncode == 0, f"worker {i} failed: {out} {err}"
        finals[i] = out.split()[-1]
    assert "serving" in finals.values(), f"a survivor took over: {finals}"

    claimed = {i: acks[i].read_text().split() for i in range(4)}
    assert len(claimed[victim]) == at_kill[victim] >= 200, "the victim wrote nothing after the kill"
    # Every acknowledged write, the victim's included, is in the root the survivors left.
    check = SharedCache("load", str(root))
    assert check.role == "serving"
    sys.path.insert(0, str(WORKER.parent))
    import shared_worker

    missing = []
    for i, keys in claimed.items():
        for key in keys:
            value = check.get(key)
            if value is None:
                missing.append(key)
            else:
                shared_worker.check(key, value)
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
    check.close()


LOGGING = """
import logging, os, sys, leafcache
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append((record.levelname, record.getMessage()))
logging.getLogger("leafcache").addHandler(Keep())
logging.getLogger("leafcache").setLevel(logging.DEBUG)
root = sys.argv[1]
leafcache.init("logged", root=root, loglevel="DEBUG")
leafcache.set("a", "b")
leafcache.init("logged", root=root, loglevel="warning")
import time
deadline = time.monotonic() + 10
while not any("serving" in m for _, m in records):
    if time.monotonic() > deadline:
        break
    time.sleep(0.05)
print(len(records), sorted({level for level, _ in records}))
"""


def test_loglevel_reaches_python_logging_and_a_private_file_under_the_root(tmp_path):
    root = tmp_path / "deep" / "root"
    done = subprocess.run(
        [sys.executable, "-c", LOGGING, str(root)],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    count, levels = done.stdout.split(" ", 1)
    assert int(count) > 0, done.stdout
    assert "DEBUG" in levels or "INFO" in levels, done.stdout
    # Not a terminal: no colour codes on standard error.
    assert "\x1b[" not in done.stderr
    log = root / "leafcache-python.log"
    assert log.exists() and log.stat().st_mode & 0o077 == 0
    text = log.read_text()
    assert "serving the shared cache" in text, text
    assert "readable by others" not in text, text
    assert "\x1b[" not in text


def test_an_unknown_loglevel_is_a_value_error():
    for bad in ["DEBUGX", "[", "leafcache=debug"]:
        with pytest.raises(ValueError, match="loglevel"):
            leafcache.init_logging(bad)
    leafcache.init_logging("WARNING")
