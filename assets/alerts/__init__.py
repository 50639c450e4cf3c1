"""Operators' alerts in Dagster: one run-failure sensor for every job of the code location."""
