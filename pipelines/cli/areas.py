"""Registers each area's command group on the `goalport` command: one line per area."""

from __future__ import annotations

import click


def register(main: click.Group) -> None:
    # Add one `main.add_command(...)` line per area module, importing it inside this function.
    from pipelines.cli.templates import template

    main.add_command(template)
    from pipelines.cli.exports import add_request_commands

    add_request_commands(main)
    from pipelines.cli.backups import backup, keys

    main.add_command(backup)
    main.add_command(keys)
    from pipelines.cli.imports import add_import_commands

    add_import_commands(main)
    from pipelines.cli.quality import check

    main.add_command(check)
    from pipelines.cli.gdpr import gdpr, verify

    main.add_command(gdpr)
    main.add_command(verify)
    pass
