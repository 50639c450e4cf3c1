"""The `goalport` command line: the same code paths as the Dagster jobs, for operators,
scripts and installs without the Dagster daemon.

`main` builds the root group (the console script's entry point, `pipelines.cli.main:main`);
the commands live in one module per area, which share `common` (and the import commands'
`import_preview`). This package's `__init__` imports nothing, so importing any of its
modules runs no other.
"""
