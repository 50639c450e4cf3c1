"""Parsers of other apps' exports (bytes -> app-shaped Arrow tables), Dagster-free.

`detect.parse_foreign_export` detects the app from the content and returns a
`base.ParsedImport`; each app's parser is its own module, and `docs/IMPORT_MAPPINGS.md`
says what each app's items become. Import names from the module that defines them.
"""
