"""Signed JSON webhooks: the one signature scheme of goalport's notifications and alerts,
and a POST that follows no redirect (a redirect could send a signed body, or the request
it answers, somewhere the operator never configured) and gives up after a timeout."""

from __future__ import annotations

import hashlib
import hmac
import urllib.error
import urllib.parse
import urllib.request

SIGNATURE_HEADER = "X-Goalport-Signature"


def sign_webhook_body(body: bytes, secret: str) -> str:
    """The `X-Goalport-Signature` header value: HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001
        return None  # urllib then raises HTTPError with the 3xx status


_OPENER = urllib.request.build_opener(_NoRedirects)


def post_signed_json(
    url: str, secret: str, body: bytes, headers: dict[str, str], timeout: float
) -> str | None:
    """POST `body` signed under `secret`; None when the receiver answered 2xx, otherwise
    why not (the URL, the status or the network error), never the body."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "goalport-webhook/1",
            **headers,
            SIGNATURE_HEADER: sign_webhook_body(body, secret),
        },
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        return f"webhook at {_host(url)} answered {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError) as exc:
        return f"webhook at {_host(url)} unreachable: {getattr(exc, 'reason', exc)}"
    return None


def _host(url: str) -> str:
    """Where a webhook is, without its path or query: those are often its credential."""
    return urllib.parse.urlsplit(url).hostname or "an unnamed host"
