"""The ``batchout`` command: every stage as a subcommand, plus tools around the pipeline.

Usage: ``batchout --help``; ``batchout prepare mnist``; ``batchout train mnist-lenet-standard``
"""

from __future__ import annotations

import importlib

from pipeline._common import new_app, run_cli

app = new_app("BatchOut robustness lab: prepare data, train, attack, tune and report.")

# (module under pipeline/, command name): each module exposes ``command``, a typer-decorated function.
_STAGES = ("validate", "validate_attacks", "prepare", "train", "attack", "report", "tune", "ui", "doctor")


def _register() -> None:
    for name in _STAGES:
        module = importlib.import_module(f"pipeline.{name}")
        app.command(name, help=module.__doc__.splitlines()[0] if module.__doc__ else None)(module.command)


_register()


def main() -> None:
    run_cli(app)


if __name__ == "__main__":
    main()
