"""`/healthz` (the process answers), `/readyz` (its database and storage answer too) and
`/metrics` (Prometheus text format)."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from api.auth import ConfigDep

router = APIRouter(tags=["operations"])
log = logging.getLogger("goalport.api")


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "a dependency does not answer"}},
    summary="The database and the storage answer",
)
def readyz(config: ConfigDep) -> Response:
    checks = {}
    try:
        with config.database.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any failure means "not ready", whatever raised it
        log.warning("readiness: database unreachable: %s", type(exc).__name__)
        checks["database"] = "unreachable"
    storage = config.storage
    try:
        storage.fs.ls(storage.root, detail=False, refresh=True)
        checks["storage"] = "ok"
    except FileNotFoundError:
        # A local folder is made by the first write; a bucket that is not there is an error.
        checks["storage"] = "ok" if storage.is_local else "unreachable"
    except Exception as exc:
        log.warning("readiness: storage unreachable: %s", type(exc).__name__)
        checks["storage"] = "unreachable"
    ready = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ready else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    summary="Prometheus metrics",
)
def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
