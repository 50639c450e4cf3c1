"""A user's sync devices: registered on first use, seen on every pull and push, revocable.

A device names itself (`deviceId`, any text up to 100 characters, unique per user). A
revoked device's pulls and pushes are refused (`DeviceRevokedError`, HTTP 403) until an
operator or the user removes it; the row stays so that the refusal is stable.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from resources import schema
from resources.audit import new_id, record_audit, utc_now
from resources.schema import as_utc

devices = schema.sync_device
MAX_DEVICE_ID = 100


class DeviceRevokedError(PermissionError):
    """The device was revoked: it may neither pull nor push."""


class DeviceError(ValueError):
    """No such device, or a device id that cannot be one."""


@dataclass(frozen=True)
class Device:
    id: str
    user_id: str
    device_id: str
    name: str | None
    last_cursor: int | None
    created_at: dt.datetime
    last_seen_at: dt.datetime
    revoked_at: dt.datetime | None

    @classmethod
    def from_row(cls, row) -> Device:
        return cls(
            id=row.id,
            user_id=row.userId,
            device_id=row.deviceId,
            name=row.name,
            last_cursor=row.lastCursor,
            created_at=as_utc(row.createdAt),
            last_seen_at=as_utc(row.lastSeenAt),
            revoked_at=as_utc(row.revokedAt),
        )


def check_device_id(device_id: str) -> str:
    if not device_id or len(device_id) > MAX_DEVICE_ID or not device_id.isprintable():
        raise DeviceError(f"a device id is 1 to {MAX_DEVICE_ID} printable characters")
    return device_id


def use_device(
    conn: sa.Connection, user_id: str, device_id: str, name: str | None = None
) -> Device:
    """The user's device `device_id`, registered now if new and marked seen; refused when
    revoked."""
    check_device_id(device_id)
    now = utc_now()
    where = sa.and_(devices.c.userId == user_id, devices.c.deviceId == device_id)
    row = conn.execute(sa.select(devices).where(where)).first()
    if row is None:
        insert = devices.insert().values(
            id=new_id("dev_"),
            userId=user_id,
            deviceId=device_id,
            name=(name or None) and name[:200],
            createdAt=now,
            lastSeenAt=now,
        )
        with conn.begin_nested():  # two first requests of one device at once
            try:
                conn.execute(insert)
            except sa.exc.IntegrityError:
                pass
        row = conn.execute(sa.select(devices).where(where)).one()
    if row.revokedAt is not None:
        raise DeviceRevokedError(f"device {device_id!r} was revoked; it may no longer sync")
    values: dict = {"lastSeenAt": now}
    if name and name[:200] != row.name:
        values["name"] = name[:200]
    conn.execute(devices.update().where(devices.c.id == row.id).values(**values))
    return Device.from_row(row)


def record_cursor(conn: sa.Connection, device: Device, position: int) -> None:
    """Where the device's last pull ended (what a push may let it skip)."""
    conn.execute(devices.update().where(devices.c.id == device.id).values(lastCursor=position))


def list_devices(engine: sa.Engine, user_id: str) -> list[Device]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(devices)
            .where(devices.c.userId == user_id)
            .order_by(devices.c.createdAt, devices.c.id)
        )
        return [Device.from_row(r) for r in rows]


def revoke_device(
    engine: sa.Engine, user_id: str, device_id: str, *, actor: str = "an operator"
) -> Device:
    """Revoke the user's device at once (its next pull or push gets 403); twice is fine."""
    with engine.begin() as conn:
        where = sa.and_(devices.c.userId == user_id, devices.c.deviceId == device_id)
        row = conn.execute(sa.select(devices).where(where)).first()
        if row is None:
            raise DeviceError(f"user {user_id} has no sync device {device_id!r}")
        if row.revokedAt is None:
            conn.execute(devices.update().where(where).values(revokedAt=utc_now()))
            record_audit(
                conn,
                user_id=user_id,
                operation="sync-device-revoke",
                operation_type="sync",
                actor=actor,
                details={"device": row.id},
            )
        return Device.from_row(conn.execute(sa.select(devices).where(where)).one())
