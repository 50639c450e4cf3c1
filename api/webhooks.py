"""`GET /api/v1/webhooks/deliveries`: the caller's webhook notifications and how their
delivery went (`?status=dead`: the dead letters, every attempt failed), newest first.

Delivery is `assets.exports.notifications` run by `webhook_delivery_sensor`; the receiver's
address is an operator's setting and never shown here.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.auth import ConfigDep, ExportsCaller
from api.errors import error_responses
from api.pages import MAX_PAGE
from assets.exports.notifications import OutboxStatus, list_notifications
from resources.schema import as_utc

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])


class DeliveryBody(BaseModel):
    id: str = Field(description="the webhook-id header of every attempt")
    event: str
    status: str = Field(description="pending, sent or dead")
    attempts: int
    lastError: str | None  # noqa: N815 (the API's field names are camelCase)
    createdAt: dt.datetime  # noqa: N815
    sentAt: dt.datetime | None  # noqa: N815
    nextAttemptAt: dt.datetime | None  # noqa: N815


class DeliveryList(BaseModel):
    items: list[DeliveryBody]


@router.get(
    "/deliveries",
    response_model=DeliveryList,
    responses=error_responses(401, 403, 404, 422, 429),
    summary="The caller's webhook notifications and their delivery, newest first",
)
def get_deliveries(
    caller: ExportsCaller,
    config: ConfigDep,
    status: Literal["pending", "sent", "dead"] | None = Query(default=None),
    limit: int = Query(default=50, ge=1, le=MAX_PAGE),
) -> DeliveryList:
    engine = config.database.engine
    rows = list_notifications(engine, status=status, user_id=caller.user_id, limit=limit)
    caller.record_read(engine, "webhook-deliveries", record_count=len(rows))
    return DeliveryList(
        items=[
            DeliveryBody(
                id=r["id"],
                event=r["kind"],
                status=r["status"],
                attempts=r["attempts"],
                lastError=r["lastError"],
                createdAt=r["createdAt"],
                sentAt=r["sentAt"],
                nextAttemptAt=as_utc(r["nextAttemptAt"])
                if r["status"] == OutboxStatus.PENDING
                else None,
            )
            for r in rows
        ]
    )
