"""Open the MLflow UI on the project's own store (mlruns/ or MLFLOW_TRACKING_URI) and print its URL.

Usage: ``batchout ui [--host 127.0.0.1] [--port 5000]`` (Ctrl-C stops it)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

from batchout.runmeta import artifact_root, repo_root, tracking_uri
from pipeline._common import run_cli, stage_command


def ui_argv(root: Path, host: str, port: int) -> list[str]:
    """The ``mlflow ui`` command line for the store under ``root``."""
    uri = tracking_uri(root)
    argv = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    if uri.startswith("sqlite:"):  # local store: artifacts live beside the database
        argv += ["--default-artifact-root", artifact_root(root)]
    return argv


@stage_command
def command(host: str = typer.Option("127.0.0.1", help="bind address (loopback by default)"),
            port: int = typer.Option(5000, min=1, max=65535)) -> None:
    root = repo_root()
    if tracking_uri(root).startswith("http"):
        print(f"runs are on the tracking server {tracking_uri(root)}: open it in a browser")
        return
    print(f"MLflow UI for {tracking_uri(root)} at http://{host}:{port}  (Ctrl-C stops it)", flush=True)
    env = {**os.environ, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true"}
    try:
        subprocess.run(ui_argv(root, host, port), check=False, env=env)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    run_cli(command)
