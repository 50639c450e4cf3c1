"""A snapshot of what operators and other code rely on: asset keys, checks, jobs and their
selections, schedules with their crons, sensors, CLI commands. A change to any of them must
be deliberate: regenerate with GOALPORT_UPDATE_SNAPSHOT=1 and review the diff."""

import json
import os
from pathlib import Path

import click

from pipelines.cli.main import main
from pipelines.definitions import defs

SNAPSHOT = Path(__file__).parent / "snapshots" / "public_surface.json"


def cli_commands(group: click.Group, prefix: str = "") -> list[str]:
    names = []
    for name, command in sorted(group.commands.items()):
        full = f"{prefix}{name}"
        names.append(full)
        if isinstance(command, click.Group):
            names.extend(cli_commands(command, f"{full} "))
    return names


def public_surface() -> dict:
    repository = defs.get_repository_def()
    jobs = {}
    for job in sorted(repository.get_all_jobs(), key=lambda j: j.name):
        if job.name.startswith("__"):
            continue
        jobs[job.name] = sorted(node.name for node in job.graph.node_defs)
    return {
        "assets": sorted(
            key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()
        ),
        "asset_checks": sorted(
            f"{check.asset_key.to_user_string()}:{check.name}"
            for check in repository.asset_graph.asset_check_keys
        ),
        "jobs": jobs,
        "schedules": {
            s.name: {"cron": s.cron_schedule, "job": s.job_name}
            for s in sorted(repository.schedule_defs, key=lambda s: s.name)
        },
        "sensors": sorted(s.name for s in repository.sensor_defs),
        "cli": cli_commands(main),
    }


def test_public_surface_matches_snapshot():
    current = json.loads(json.dumps(public_surface(), sort_keys=True))
    if os.environ.get("GOALPORT_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text())
