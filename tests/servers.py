"""Test helpers for HTTP servers run as subprocesses: a free loopback port, start and wait for
``/health``, stop cleanly (SIGTERM to the server's own pid first, its whole group only as a fallback).

Usage: ``with start_server([sys.executable, "-m", "mlflow", "server", "--port", str(port)], port) as srv:
get_json(srv.url + "/api/2.0/mlflow/experiments/search?max_results=10")``
(``from servers import start_server``; tests/ is on sys.path under pytest)
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it; a tiny race is accepted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """Status code and body of a GET (HTTP errors are returned, not raised)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def get_json(url: str, query: Mapping[str, Any] | None = None, timeout: float = 10.0) -> Any:
    """GET ``url?query`` and decode JSON; a non-200 answer raises with the body in the message."""
    full = url + ("?" + urllib.parse.urlencode(query, doseq=True) if query else "")
    status, body = get(full, timeout)
    if status != 200:
        raise AssertionError(f"GET {full}: HTTP {status}: {body[:300]!r}")
    return json.loads(body)


def post_json(url: str, payload: Mapping[str, Any], timeout: float = 10.0) -> Any:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


@dataclass
class Server:
    """A started server: its process, base URL and the file holding its stdout+stderr."""

    proc: subprocess.Popen
    url: str
    port: int
    log: Path
    returncode: int | None = field(default=None)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM the server's own pid and wait; its children must go with it (a server that
        orphans its workers is a bug the caller should see: the port stays open). The group is
        killed only as a last resort, so a test never leaves processes behind."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill_group(self.proc)
        self.returncode = self.proc.returncode
        return self.returncode

    def kill_leftovers(self) -> None:
        """Kill whatever is left in the server's process group (workers it failed to stop)."""
        _kill_group(self.proc)


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # start_new_session: the group id is the server's pid
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def wait_healthy(server: Server, timeout: float = 60.0, path: str = "/health") -> None:
    """Poll ``url + path`` until it answers 200; fail early with the server's output if it dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited with {server.proc.returncode}:\n{server.output()[-3000:]}")
        with contextlib.suppress(OSError):
            if get(server.url + path, timeout=2.0)[0] == 200:
                return
        time.sleep(0.25)
    raise TimeoutError(f"{server.url}{path} not healthy after {timeout:.0f} s:\n{server.output()[-3000:]}")


def launch(argv: Sequence[str], port: int, *, log: Path, env: Mapping[str, str] | None = None,
           cwd: Path | None = None, timeout: float = 60.0, health: str = "/health") -> Server:
    """Start ``argv`` (which must listen on ``port``) in its own session and wait for ``health`` to answer 200.
    The caller owns the returned server and must ``stop()`` it (``start_server`` does that)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True)
    server = Server(proc, f"http://{LOOPBACK}:{port}", port, log)
    try:
        wait_healthy(server, timeout, path=health)
    except BaseException:
        server.stop(timeout=5)
        server.kill_leftovers()
        raise
    return server


@contextlib.contextmanager
def start_server(argv: Sequence[str], port: int, *, log: Path, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None, timeout: float = 60.0, health: str = "/health") -> Iterator[Server]:
    """``launch`` as a context manager: stopped (and its group cleaned up) on exit."""
    server = launch(argv, port, log=log, env=env, cwd=cwd, timeout=timeout, health=health)
    try:
        yield server
    finally:
        server.stop()
        server.kill_leftovers()


class _Health(http.server.BaseHTTPRequestHandler):
    """Answers 200 on /health and 404 elsewhere, like an MLflow server's health endpoint."""

    def do_GET(self):  # noqa: N802 (http.server API)
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def health_server() -> Iterator[str]:
    """A loopback HTTP server in a thread that only has a healthy /health; yields its base URL."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
