"""Imports: another app's export, or goalport's own, brought into a user's data.

The walk, module by module: `detect` (what the file is; `parsers/<app>.py` for other
apps) -> `staging` (rows shaped like the app's, ids mapped, bad rows reported) -> `diff`
(with `conflicts`) builds a `plan.ImportPlan` -> `preview` stores it (`stored_plans`) with
the fingerprint of the user's data (`user_state`) -> `apply` writes it in one transaction
(`bulk_sql`), recording every row's before and after (`row_json`) -> `undo` puts them back.
`jobs` keeps the `DataImportJob` row; `defs` is the Dagster side.
"""
