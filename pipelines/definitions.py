"""The one Definitions of the goalport code location: every area's definitions merged,
with the resources configured once (from the environment, defaulting to ./var)."""

import dagster as dg

from assets import backups, exports
from assets import checks as quality_checks
from assets import gdpr as gdpr_assets
from assets import imports as import_assets
from assets import templates as template_assets
from pipelines import export_requests
from resources.database import AppDatabase
from resources.storage import ObjectStorage


def shared_resources() -> dict:
    """Empty URLs resolve at run time: GOALPORT_DATABASE_URL / GOALPORT_STORAGE_URL or ./var."""
    return {"database": AppDatabase(), "storage": ObjectStorage()}


# One entry per area: each module exposes a small `defs`.
AREA_DEFINITIONS = [
    template_assets.defs,
    exports.defs,
    quality_checks.defs,
    export_requests.defs,
    backups.defs,
    import_assets.defs,
    gdpr_assets.defs,
]

defs = dg.Definitions.merge(dg.Definitions(resources=shared_resources()), *AREA_DEFINITIONS)
