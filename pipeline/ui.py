"""Open the MLflow UI on the project's own store (mlruns/ or MLFLOW_TRACKING_URI) and print its URL.

Usage: ``batchout ui [--host 127.0.0.1] [--port 5000] [--workers 1] [--allowed-hosts NAME[,NAME]]``
(Ctrl-C or SIGTERM stops it, workers included)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from batchout.paths import artifacts_beside
from batchout.tracking.meta import repo_root, tracking_uri
from pipeline._common import run_cli, stage_command

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def ui_argv(root: Path, host: str, port: int, workers: int = 1, allowed_hosts: str | None = None) -> list[str]:
    """The ``mlflow ui`` command line for the store under ``root``. One worker by default: a UI for one
    person needs no more, and each uvicorn worker is a ~300 MB interpreter."""
    uri = tracking_uri(root)
    argv = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port),
            "--workers", str(workers)]
    artifacts = artifacts_beside(uri)  # where batchout.tracking puts new experiments' artifacts
    if artifacts is not None:
        argv += ["--default-artifact-root", artifacts]
    if allowed_hosts:  # MLflow rejects Host headers other than localhost/private IPs unless listed
        argv += ["--allowed-hosts", allowed_hosts]
    return argv


@stage_command
def command(host: str = typer.Option("127.0.0.1", help="bind address (loopback by default)"),
            port: int = typer.Option(5000, min=1, max=65535),
            workers: int = typer.Option(1, min=1, max=16, help="server worker processes"),
            allowed_hosts: str = typer.Option(
                "", help="extra Host headers to accept, comma-separated (needed when binding beyond loopback "
                         "and browsing by a public name)")) -> None:
    root = repo_root()
    uri = tracking_uri(root)
    if uri.startswith("http"):
        print(f"runs are on the tracking server {uri}: open it in a browser")
        return
    shown = f"[{host}]" if ":" in host else host
    print(f"MLflow UI for {uri} at http://{shown}:{port}  (Ctrl-C stops it)", flush=True)
    if host not in _LOOPBACK:
        print(f"warning: listening on {host}: anyone who can reach this machine can read and change the runs",
              file=sys.stderr, flush=True)
    env = {**os.environ, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true"}
    # MLflow 3 otherwise starts a job runner and ~7 huey consumers (~700 MB) for GenAI jobs (judges,
    # prompt optimisation) that this project never submits; an explicit user setting still wins.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    argv = ui_argv(root, host, port, workers, allowed_hosts or None)
    # exec, not a child: SIGTERM (a service manager, a test) then reaches MLflow itself, which passes it
    # on to its uvicorn workers; a python parent would die alone and leave the server running.
    os.execve(argv[0], argv, env)


if __name__ == "__main__":
    run_cli(command)
