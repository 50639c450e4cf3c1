"""Goal templates: a goal tree made shareable, versioned, published and applied.

`template_file` is the file format (pure: build, check, plan, diff, catalog index);
`versions` the `GoalTemplate` rows (create, version, import, read, rate); `apply` makes a
template's goals for a user; `catalog` publishes the public ones to object storage;
`defs` is the Dagster side.
"""
