"""`leafcache.start`: the seed's REST endpoints, with the requests `curl` makes."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from urllib.parse import quote

import pytest

import leafcache


def request(url: str, data: bytes = None, headers: dict = None):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type"), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


@pytest.fixture
def server(monkeypatch):
    monkeypatch.delenv("LEAFCACHE_ROOT", raising=False)
    leafcache.init("rest")
    with leafcache.start_background(host="127.0.0.1", port=0) as s:
        yield s


def test_get_and_set_as_the_seed_serves_them(server):
    base = server.url
    assert server.address[0] == "127.0.0.1" and server.address[1] > 0
    # curl "http://host:port/set?key=a&value=b"
    status, kind, body = request(f"{base}/set?key=a&value=b")
    assert (status, body) == (200, b"OK"), "the Rust HTTP door's answer"
    status, kind, body = request(f"{base}/get?key=a")
    assert (status, body) == (200, b"b") and kind.startswith("text/plain")
    assert leafcache.get("a") == "b", "the endpoints serve the module-level cache"
    # Encoded keys and values; a value set from Python as an object reads as JSON.
    request(f"{base}/set?key={quote('ключ')}&value={quote('a b&c')}")
    assert request(f"{base}/get?key={quote('ключ')}")[2] == "a b&c".encode()
    leafcache.set("obj", {"n": [1, 2]})
    status, kind, body = request(f"{base}/get?key=obj")
    assert kind == "application/json" and json.loads(body) == {"n": [1, 2]}
    # curl -d key=k -d value=v http://host:port/set
    status, _, _ = request(
        f"{base}/set", data=b"key=form&value=posted",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 200 and leafcache.get("form") == "posted"
    # curl --data-binary @file "http://host:port/set?key=raw"
    request(f"{base}/set?key=raw", data=b"body value", headers={"Content-Type": "text/plain"})
    assert leafcache.get("raw") == "body value"
    # A ttl parameter in seconds or text.
    assert request(f"{base}/set?key=t&value=v&ttl=1h")[0] == 200
    assert request(f"{base}/set?key=t&value=v&ttl=later")[0] == 400


def test_misses_and_bad_requests_are_clear(server):
    base = server.url
    status, kind, body = request(f"{base}/get?key=missing")
    # Errors in the Rust HTTP door's shape: {"error": {"code", "message"}}.
    assert status == 404 and kind == "application/json"
    assert json.loads(body) == {"error": {"code": "not_found", "message": "no key 'missing'"}}
    for path in ["/get", "/set?key=k", "/set?value=v", "/get?key=a&key=b"]:
        status, _, body = request(base + path)
        error = json.loads(body)["error"]
        assert status == 400 and error["code"] == "bad_request", path
        assert "key" in error["message"] or "value" in error["message"]
    status, _, body = request(f"{base}/nowhere")
    error = json.loads(body)["error"]
    assert status == 404 and error["code"] == "not_found" and "/get?key=" in error["message"]
    request(f"{base}/set?key=p&value=1")
    assert request(f"{base}/pop?key=p")[2] == b"1"
    assert request(f"{base}/pop?key=p")[0] == 404
    request(f"{base}/set?key=d&value=1")
    assert request(f"{base}/delete?key=d")[::2] == (200, b"OK")
    assert request(f"{base}/delete?key=d")[0] == 404


def test_start_checks_its_arguments(monkeypatch):
    monkeypatch.delenv("LEAFCACHE_ROOT", raising=False)
    leafcache.init("rest")
    with pytest.raises(ValueError, match="port"):
        leafcache.start(port=70000)
    with pytest.raises(ValueError, match="port"):
        leafcache.start(port="5001")
    with leafcache.start_background(port=0) as s:
        with pytest.raises(OSError):
            leafcache.start(port=s.address[1])
        with pytest.raises(OSError):
            leafcache.start_background(port=s.address[1])


def test_curl_itself(server):
    curl = shutil.which("curl")
    assert curl, "curl is needed (tests/run-all installs it)"
    base = server.url

    def run(*args):
        done = subprocess.run([curl, "-s", "-w", "\n%{http_code}", *args], capture_output=True,
                              text=True, timeout=10)
        body, _, code = done.stdout.rpartition("\n")
        return int(code), body

    assert run(f"{base}/set?key=greeting&value=hello") == (200, "OK")
    assert run(f"{base}/get?key=greeting") == (200, "hello")
    assert run("-d", "key=k", "-d", "value=a b", f"{base}/set")[0] == 200
    assert run(f"{base}/get?key=k") == (200, "a b")
    code, body = run(f"{base}/get?key=nothing")
    assert code == 404 and json.loads(body)["error"]["code"] == "not_found"


BLOCKING = """
import sys, leafcache
leafcache.init("blocking")
leafcache.start(host="127.0.0.1", port=int(sys.argv[1]))
print("returned", flush=True)
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_start_blocks_until_a_signal_as_the_seed_s_did(tmp_path, processes, monkeypatch, sig):
    import signal
    import time

    monkeypatch.delenv("LEAFCACHE_ROOT", raising=False)
    script = tmp_path / "serve.py"
    script.write_text(BLOCKING)
    port = free_port()
    child = processes.python(script, str(port))
    deadline = time.monotonic() + 20
    while True:
        try:
            status, _, _ = request(f"http://127.0.0.1:{port}/set?key=a&value=b")
            if status == 200:
                break
        except OSError:
            pass
        assert child.poll() is None, f"the script ended: {child.communicate()}"
        assert time.monotonic() < deadline, "never served"
        time.sleep(0.05)
    # The script's last line has not run: start() is still serving.
    assert request(f"http://127.0.0.1:{port}/get?key=a")[2] == b"b"
    assert child.poll() is None
    child.send_signal(getattr(signal, sig))
    out, err = child.communicate(timeout=20)
    assert child.returncode == 0, err
    assert out.strip() == "returned", (out, err)
