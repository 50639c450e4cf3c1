"""goalport's HTTP API v1 (`goalport serve`): FastAPI on uvicorn, stateless, every piece of
state in PostgreSQL and object storage. It asks the areas' plain modules for work and
never does the work inside a request; it never imports Dagster definitions."""
