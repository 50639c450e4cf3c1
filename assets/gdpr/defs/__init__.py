"""The GDPR area's Dagster definitions: bulk bundles over user-id hash buckets
(`partitions.py`), the erasure job and its sensor (`assets.py`), and the clean-up of
Dagster's own records of an erased user (`run_history.py`)."""

from assets.gdpr.defs.assets import defs

__all__ = ["defs"]
