"""The one Definitions of the goalport code location: every area's definitions merged,
with the resources configured once (from the environment, defaulting to ./var)."""

import dagster as dg

from assets import exports
from resources.database import AppDatabase
from resources.storage import ObjectStorage


def shared_resources() -> dict:
    """Empty URLs resolve at run time: GOALPORT_DATABASE_URL / GOALPORT_STORAGE_URL or ./var."""
    return {"database": AppDatabase(), "storage": ObjectStorage()}


# One entry per area: each module exposes a small `defs`.
AREA_DEFINITIONS = [
    exports.defs,
]

defs = dg.Definitions.merge(dg.Definitions(resources=shared_resources()), *AREA_DEFINITIONS)
