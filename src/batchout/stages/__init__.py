"""Stage functions: ``run(params, ..., paths) -> metrics``, one module per pipeline stage."""
