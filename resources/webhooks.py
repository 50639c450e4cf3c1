"""Signed JSON webhooks: the one signature scheme of goalport's notifications and alerts,
and a POST that follows no redirect (a redirect could send a signed body, or the request
it answers, somewhere the operator never configured) and gives up after a timeout.

Signing is Standard Webhooks' (https://www.standardwebhooks.com): headers `webhook-id`
(the same on every attempt: receivers de-duplicate on it), `webhook-timestamp` (seconds)
and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">` under the secret
`whsec_<base64 key>`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import urllib.error
import urllib.request


class WebhookSecretError(ValueError):
    """The webhook secret is not `whsec_<base64>`."""


def webhook_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: the base64 after `whsec_`."""
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WebhookSecretError(
            "a webhook secret must be whsec_ followed by base64 (e.g. whsec_"
            + base64.b64encode(b"32 random bytes.................").decode()
            + ")"
        ) from exc


def sign_webhook(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header: `v1,` and the base64 HMAC-SHA256 of
    `id.timestamp.body` under the secret's key."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(webhook_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx is the receiver's answer, not a place to go: following it would send the
    signed payload wherever the receiver points."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001
        return None  # urllib then raises HTTPError with the 3xx status


_OPENER = urllib.request.build_opener(_NoRedirects)


def post_json(url: str, body: bytes, headers: dict[str, str], timeout: float) -> str | None:
    """POST a JSON `body` without following redirects; None when the receiver answered
    2xx, otherwise why not (the status or the network error), never the URL (its path or query
    is often its credential, and a delivery's error is shown to its user) nor the body."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "goalport-webhook/1", **headers},
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(64 * 1024)
    except urllib.error.HTTPError as exc:
        return f"the webhook answered {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError) as exc:
        return f"the webhook is unreachable: {getattr(exc, 'reason', exc)}"
    return None


def post_signed_json(
    url: str,
    secret: str,
    message_id: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
) -> str | None:
    """`post_json` with the Standard Webhooks headers for `message_id`, signed under
    `secret` now; why not sent when the secret is not a `whsec_` one."""
    timestamp = int(dt.datetime.now(dt.UTC).timestamp())
    try:
        signature = sign_webhook(secret, message_id, timestamp, body)
    except WebhookSecretError as exc:
        return str(exc)
    signed = {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }
    return post_json(url, body, {**headers, **signed}, timeout)
