"""The `goalport` root command: each area's commands added to one group, in one place.

The console script's entry point (`pipelines.cli.main:main`). The commands live in one
module per area, which share `pipelines.cli.common` and never import this module back.
Commands import their heavy modules when they run, so `goalport --help` stays fast.
"""

from __future__ import annotations

import click

from pipelines.cli import (
    backups,
    destinations,
    exports,
    gdpr,
    imports,
    install,
    notifications,
    portal,
    quality,
    serve,
    sync,
    templates,
    tokens,
)


@click.group()
@click.version_option(package_name="goalport")
def main() -> None:
    """goalport: export, back up, erase and import Goal Assistant data.

    Configured by GOALPORT_DATABASE_URL and GOALPORT_STORAGE_URL; without them, a SQLite
    database and a storage folder under ./var (with GOALPORT_PROFILE=production: an error).
    """
    from resources import settings

    try:
        settings.require_production_settings()
    except settings.SettingError as exc:
        raise click.UsageError(str(exc)) from None


main.add_command(install.db)
main.add_command(install.seed)
main.add_command(install.demo)
main.add_command(exports.export)
main.add_command(exports.request)
main.add_command(exports.exports)
main.add_command(serve.serve_downloads)
main.add_command(backups.backup)
backups.backup.add_command(destinations.connect)
main.add_command(backups.keys)
main.add_command(imports.import_group)
main.add_command(imports.imports_group)
main.add_command(templates.template)
main.add_command(quality.check)
main.add_command(gdpr.gdpr)
main.add_command(gdpr.verify)
main.add_command(serve.serve)
main.add_command(tokens.tokens)
main.add_command(notifications.notifications)
main.add_command(portal.portal)
main.add_command(sync.sync_group)

if __name__ == "__main__":
    main()
