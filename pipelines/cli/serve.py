"""`goalport serve`: the HTTP API v1 on uvicorn (`api.app`), and `goalport serve-downloads`,
its deprecated former name (which served download links only)."""

from __future__ import annotations

import click

from pipelines.cli.common import friendly_errors


def _run(host: str, port: int) -> None:
    from api.app import serve as serve_api
    from api.config import ApiConfig

    config = ApiConfig.from_settings()
    config.database.check_reachable()
    click.echo(f"goalport API on http://{host}:{port} (docs at /api/v1/docs)", err=True)
    serve_api(host, port, config)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@friendly_errors
def serve(host: str, port: int) -> None:
    """Serve the HTTP API v1 (exports, downloads with resume, health, metrics)."""
    _run(host, port)


@click.command("serve-downloads", hidden=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@friendly_errors
def serve_downloads(host: str, port: int) -> None:
    """Deprecated: use `goalport serve` (it answers the old /download/<token> links too)."""
    click.echo("serve-downloads is deprecated: use `goalport serve`", err=True)
    _run(host, port)
