"""Parsers of other apps' exports (bytes -> app-shaped Arrow tables), Dagster-free.

`parse_foreign_export` detects the app from the content and returns a `ParsedImport`;
`docs/IMPORT_MAPPINGS.md` says what each app's items become.
"""

from assets.imports.parsers.base import (
    ImportFormatError,
    MappingEntry,
    ParsedImport,
    ZipLimits,
    safe_zip_members,
)
from assets.imports.parsers.detect import (
    PARSERS,
    SOURCE_APPS,
    UNKNOWN,
    detect_source,
    parse_foreign_export,
)

__all__ = [
    "PARSERS",
    "SOURCE_APPS",
    "UNKNOWN",
    "ImportFormatError",
    "MappingEntry",
    "ParsedImport",
    "ZipLimits",
    "detect_source",
    "parse_foreign_export",
    "safe_zip_members",
]
