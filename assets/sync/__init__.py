"""Sync across devices: the change log the app tables' triggers write, read as a change feed
(`changelog`: pull, cursors, the horizon and its compaction), a device's push merged in
(`merge`, judged by `validate`, values by `rows`), and the user's devices (`devices`).
`defs` is the Dagster side (the daily compaction).
"""
