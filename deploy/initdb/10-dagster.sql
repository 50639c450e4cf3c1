-- Dagster's instance gets a database of its own beside the app's (compose.yaml).
CREATE DATABASE dagster OWNER goalport;
