"""One pure function per pipeline stage: ``run(params, ..., paths) -> metrics`` (prepare, train,
attack, tune, report). Each reads its inputs from ``paths``, writes its DVC outs atomically and,
except prepare, logs to MLflow through ``batchout.tracking``.

Usage: ``from batchout.stages.train import run; metrics = run(params, "mnist-lenet-standard-s0", Paths())``

The ``pipeline/<stage>.py`` typer commands are thin wrappers around these. Nothing else imports a
stage (stages are the top of the import graph).
"""
