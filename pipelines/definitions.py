"""The one Definitions of the goalport code location: every area's definitions merged,
with the resources configured once (from the environment, defaulting to ./var)."""

import dagster as dg

from assets.alerts.defs import defs as alert_defs
from assets.backups.defs import defs as backup_defs
from assets.exports.defs import defs as export_defs
from assets.gdpr.defs import defs as gdpr_defs
from assets.imports.defs import defs as import_defs
from assets.quality.defs import defs as quality_defs
from assets.sync.defs import defs as sync_defs
from assets.templates.defs import defs as template_defs
from resources import settings
from resources.database import AppDatabase
from resources.storage import ObjectStorage

# In the production profile, a missing database, storage or secret stops the code location
# from loading (a clear error in the UI and the code server's log), never a ./var fallback.
settings.require_production_settings()


def shared_resources() -> dict:
    """Empty URLs resolve at run time: GOALPORT_DATABASE_URL / GOALPORT_STORAGE_URL or ./var."""
    return {"database": AppDatabase(), "storage": ObjectStorage()}


AREA_DEFINITIONS = [
    template_defs,
    export_defs,
    quality_defs,
    backup_defs,
    import_defs,
    gdpr_defs,
    alert_defs,
    sync_defs,
]

defs = dg.Definitions.merge(dg.Definitions(resources=shared_resources()), *AREA_DEFINITIONS)
