"""Check what the pipeline needs (packages, device, data, MLflow, Optuna, disk) and say what to fix.

Checked: Python, package versions against pyproject.toml, CUDA/bf16 and train/attack.device, git and
DVC, params.yaml, prepared data (sha256 against meta.json) and raw sources, the MLflow store,
tune.storage, free disk.

Usage: ``batchout doctor [--quick] [--json] [--params FILE]``

Exit code: 0 when no check failed (warnings allowed), 1 when a check failed, 2 on a usage error.
``--json`` prints ``{"ok": bool, "failed": n, "warned": n, "checks": [{name, status, found, advice}]}``.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pipeline._common import PARAMS_OPTION, run_cli, stage_command

_MARK = {"ok": "ok", "warn": "WARN", "fail": "FAIL"}


def table(checks: list) -> str:
    """One aligned row per check (status, name, what was found); advice on an indented line below."""
    width = max((len(c.name) for c in checks), default=0)
    lines = []
    for c in checks:
        lines.append(f"{_MARK.get(c.status, c.status):<4}  {c.name:<{width}}  {c.found}")
        if c.advice:
            lines.append(f"{'':<4}  {'':<{width}}  -> {c.advice}")
    return "\n".join(lines)


def summary(checks: list) -> dict:
    failed = sum(c.status == "fail" for c in checks)
    warned = sum(c.status == "warn" for c in checks)
    return {"ok": failed == 0, "failed": failed, "warned": warned, "checks": [c.as_dict() for c in checks]}


@stage_command
def command(params: Path = PARAMS_OPTION,
            quick: bool = typer.Option(False, "--quick", help="do not hash prepared files over 16 MiB"),
            as_json: bool = typer.Option(False, "--json", help="print the checks as JSON")) -> None:
    # imported here: the checks import torch lazily, and `batchout --help` must stay fast
    from batchout.doctor import exit_code, run
    from batchout.tracking.meta import repo_root

    checks = run(repo_root(), params_path=params, quick=quick)
    result = summary(checks)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print(table(checks))
        print(f"\n{len(checks)} checks: {result['failed']} failed, {result['warned']} warnings")
    code = exit_code(checks)
    if code:
        raise typer.Exit(code)


if __name__ == "__main__":
    run_cli(command)
