"""The module-level cache over HTTP: the seed's ``/get?key=`` and ``/set?key=&value=``."""

from __future__ import annotations

import json
import threading
import warnings
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Tuple
from urllib.parse import parse_qs, urlsplit

_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class RestServer:
    """An HTTP server for one cache, on a daemon thread. ``address`` is ``(host, port)`` as
    bound; ``close()`` stops it."""

    def __init__(self, cache: Any, host: str = "127.0.0.1", port: int = 5001) -> None:
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an int in 0..65535, not {port!r}")
        if host not in _LOCAL_HOSTS and not host.startswith("127."):
            warnings.warn(
                f"serving the cache on {host or 'all interfaces'}:{port} without a password: "
                "anyone who can reach it can read and write",
                RuntimeWarning,
                stacklevel=3,
            )
        handler = type("Handler", (_Handler,), {"cache": cache})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="leafcache-rest", daemon=True
        )
        self._thread.start()

    @property
    def address(self) -> Tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> "RestServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Handler(BaseHTTPRequestHandler):
    cache: Any
    server_version = "leafcache"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        url = urlsplit(self.path)
        params = parse_qs(url.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            body = self.rfile.read(length)
            kind = self.headers.get("Content-Type", "")
            if kind.startswith("application/x-www-form-urlencoded"):
                for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items():
                    params.setdefault(k, v)
            elif "value" not in params:
                params["value"] = [body.decode("utf-8", "surrogateescape")]
        try:
            if url.path == "/get":
                value = self.cache.get(_one(params, "key"))
                if value is None:
                    return self._missing(params)
                return self._send(HTTPStatus.OK, value)
            if url.path == "/set":
                ttl = params.get("ttl", [None])[0]
                self.cache.set(_one(params, "key"), _one(params, "value"), _ttl(ttl))
                return self._send(HTTPStatus.OK, "OK")
            if url.path in ("/pop", "/delete"):
                value = self.cache.pop(_one(params, "key"))
                if value is None:
                    return self._missing(params)
                return self._send(HTTPStatus.OK, value if url.path == "/pop" else "OK")
            return self._error(
                HTTPStatus.NOT_FOUND,
                "not_found",
                f"no endpoint {url.path}; try /get?key=, /set?key=&value=, /pop?key=, "
                "/delete?key=",
            )
        except (_BadRequest, ValueError, TypeError) as e:
            return self._error(HTTPStatus.BAD_REQUEST, "bad_request", str(e))
        except Exception as e:  # the cache is unreachable: the client should retry
            return self._error(HTTPStatus.SERVICE_UNAVAILABLE, "unavailable", str(e))

    def _error(self, status: HTTPStatus, code: str, message: str) -> None:
        """An error in the Rust HTTP door's shape: ``{"error": {"code", "message"}}``."""
        return self._send(status, {"error": {"code": code, "message": message}})

    def _missing(self, params: dict) -> None:
        key = params.get("key", [""])[0]
        return self._error(HTTPStatus.NOT_FOUND, "not_found", f"no key {key!r}")

    def _send(self, status: HTTPStatus, value: Any) -> None:
        if isinstance(value, bytes):
            body, kind = value, "application/octet-stream"
        elif isinstance(value, str):
            body, kind = value.encode(), "text/plain; charset=utf-8"
        else:
            body, kind = json.dumps(value).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _BadRequest(Exception):
    pass


def _one(params: dict, name: str) -> str:
    values = params.get(name)
    if not values:
        raise _BadRequest(f"missing the {name}= parameter")
    if len(values) > 1:
        raise _BadRequest(f"{name}= given {len(values)} times")
    return values[0]


def _ttl(text: Any) -> Any:
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return text
