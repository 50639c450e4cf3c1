"""Signed JSON webhooks: the one signature scheme of goalport's notifications and alerts,
and a POST that follows no redirect (a redirect could send a signed body, or the request
it answers, somewhere the operator never configured) and gives up after a timeout."""

from __future__ import annotations

import hashlib
import hmac
import urllib.error
import urllib.request

SIGNATURE_HEADER = "X-Goalport-Signature"


def sign_webhook_body(body: bytes, secret: str) -> str:
    """The `X-Goalport-Signature` header value: HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


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
    url: str, secret: str, body: bytes, headers: dict[str, str], timeout: float
) -> str | None:
    """`post_json` with the body signed under `secret` (operator alerts)."""
    return post_json(
        url, body, {**headers, SIGNATURE_HEADER: sign_webhook_body(body, secret)}, timeout
    )
