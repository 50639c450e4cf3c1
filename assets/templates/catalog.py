"""The public template catalog in object storage: one file per public template version
and an index, for the app and third parties to browse without goalport's database.

`rebuild_catalog` writes what is missing and removes what is no longer public;
`catalog_fingerprint` changes whenever the catalog would, so the Dagster asset rebuilds it
only then. The file names and the index format are `assets.templates.template_file`'s.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa

from assets.templates.template_file import build_catalog_index, dump_template, filter_templates
from assets.templates.versions import TemplateError, record_from_row
from resources import schema
from resources.audit import utc_now
from resources.storage_layout import CATALOG_PREFIX, catalog_index_key, catalog_version_key

_t = schema.goal_template


class Storage(Protocol):
    def write_bytes(self, key: str, data: bytes) -> Any: ...
    def read_bytes(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str = "") -> list[str]: ...
    def delete(self, key: str) -> bool: ...


@dataclass(frozen=True)
class CatalogResult:
    index_key: str
    index_url: str
    index_bytes: int
    templates: int
    versions: int
    files_written: list[str]
    files_deleted: list[str]
    fingerprint: str


def catalog_fingerprint(engine: sa.Engine) -> str:
    """Changes whenever a public template is added, edited, unpublished, downloaded or rated."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.max(_t.c.createdAt),
                sa.func.max(_t.c.updatedAt),
                sa.func.sum(_t.c.downloadCount),
                sa.func.sum(_t.c.ratingCount),
                sa.func.sum(_t.c.ratingSum),
            ).where(_t.c.visibility == "public")
        ).one()
    values = [v.isoformat() if isinstance(v, dt.datetime) else v for v in row]
    return hashlib.sha256(json.dumps(values, default=str).encode()).hexdigest()[:16]


def rebuild_catalog(
    engine: sa.Engine, storage: Storage, *, generated_at: dt.datetime | None = None
) -> CatalogResult:
    """Write one file per public template version (once: versions never change), then the
    index, then delete catalog files of versions that are no longer public."""
    fingerprint = catalog_fingerprint(engine)
    with engine.connect() as conn:
        records = [
            record_from_row(r)
            for r in conn.execute(sa.select(_t).where(_t.c.visibility == "public")).mappings()
        ]
    wanted = {catalog_version_key(r.template_key, r.version): r for r in records}
    written = []
    for key, record in sorted(wanted.items()):
        if not storage.exists(key):
            storage.write_bytes(key, dump_template(record.document))
            written.append(key)
    index = build_catalog_index(
        [r.as_row() for r in records], generated_at=generated_at or utc_now()
    )
    index_key = catalog_index_key()
    stored = storage.write_bytes(
        index_key, json.dumps(index, ensure_ascii=False, indent=2).encode("utf-8")
    )
    deleted = [k for k in storage.list(CATALOG_PREFIX) if k != index_key and k not in wanted]
    for key in deleted:
        storage.delete(key)
    return CatalogResult(
        index_key=index_key,
        index_url=stored.url,
        index_bytes=stored.size,
        templates=index["templateCount"],
        versions=len(wanted),
        files_written=written,
        files_deleted=deleted,
        fingerprint=fingerprint,
    )


def read_catalog(storage: Storage) -> dict:
    """The published catalog index; TemplateError when none has been built yet."""
    key = catalog_index_key()
    if not storage.exists(key):
        raise TemplateError(
            "no template catalog has been published yet; run `goalport template catalog` or "
            "the template_catalog asset"
        )
    return json.loads(storage.read_bytes(key))


def search_catalog(
    storage: Storage,
    *,
    category: str | None = None,
    tag: str | None = None,
    search: str | None = None,
) -> list[dict]:
    """Entries of the published catalog that match category, tag and text."""
    return filter_templates(
        read_catalog(storage)["templates"], category=category, tag=tag, text=search
    )
