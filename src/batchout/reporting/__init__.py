"""The report: runs grouped across seeds with their statistics (``groups``), the paper's and the seed
project's numbers to compare with (``reference``), the tables and sections (``tables``), Markdown and
self-contained HTML (``render``), every figure (``plots`` and ``figures``, matplotlib, files only) and
the report's figure section (``gallery``).

Usage: ``groups = batchout.reporting.groups.make_groups(records)``;
``render.to_html(title, tables.build_blocks(title, groups, alpha, gallery.figure_blocks(...)), images)``

Nothing is imported here, so the train and attack stages can draw with ``plots`` without depending
on the report's tables. Reads metrics dicts, never tensors or files: must not import models,
attacks, training, tracking or tuning (stages do the I/O).
"""
