"""Registers each area's command group on the `goalport` command: one line per area."""

from __future__ import annotations

import click


def register(main: click.Group) -> None:
    # Add one `main.add_command(...)` line per area module, importing it inside this function.
    pass
