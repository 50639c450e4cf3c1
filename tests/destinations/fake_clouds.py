"""Fake Dropbox, Google Drive and OneDrive servers for the tests: real HTTP servers (Starlette
on uvicorn, on a loopback port) that answer the exchanges goalport uses the way the
providers' documentation describes them. They were written from these pages, not from
goalport's code, and goalport has not been run against the real services:

- OAuth 2.0 with PKCE, all three: RFC 6749 (sections 4.1, 5.2, 6) and RFC 7636 (S256);
  https://developers.dropbox.com/oauth-guide and
  https://www.dropbox.com/developers/documentation/http/documentation#oauth2-authorize ,
  https://developers.google.com/identity/protocols/oauth2/native-app ,
  https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow
  (errors as {"error": "invalid_grant", "error_description": ...}; a denied consent
  comes back to the redirect URI as ?error=access_denied&state=...).
- Dropbox API v2: https://www.dropbox.com/developers/documentation/http/documentation
  (files/list_folder[/continue], get_metadata, download with Range, upload,
  upload_session/start, append_v2, finish, delete_v2, create_folder_v2; Dropbox-API-Arg
  header JSON that must be ASCII; 409 errors with error_summary; 401 with
  {"error_summary": "invalid_access_token/...", "error": {".tag": "invalid_access_token"}}).
- Drive API v3: https://developers.google.com/workspace/drive/api/reference/rest/v3/files ,
  .../guides/search-files (the `q` language), .../guides/manage-uploads#resumable (session
  URI in Location, chunks of multiples of 256 KiB, 308 Resume Incomplete with Range),
  errors as {"error": {"code": 401, "message": ..., "errors": [...], "status":
  "UNAUTHENTICATED"}}.
- Microsoft Graph: https://learn.microsoft.com/en-us/graph/api/driveitem-get ,
  driveitem-list-children (@odata.nextLink), driveitem-get-content (302 to a
  pre-authenticated URL), driveitem-put-content, driveitem-post-children,
  driveitem-delete, driveitem-createuploadsession (fragments of multiples of 320 KiB, 202
  with nextExpectedRanges, no Authorization header on the upload URL, DELETE cancels),
  errors as {"error": {"code": "InvalidAuthenticationToken" | "itemNotFound", ...}}.

Each fake keeps its files in memory and records every request (method, path, headers) so
tests can assert what was sent. Pages are deliberately short (2 entries) so paging runs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlencode

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

PAGE = 2  # entries per page of every listing
DRIVE_UNIT = 256 * 1024
GRAPH_UNIT = 320 * 1024


@dataclass
class FakeOAuth:
    """The provider's authorisation server: codes, access and refresh tokens."""

    client_id: str
    client_secret: str
    rotates_refresh_tokens: bool = False  # Microsoft does; Google and Dropbox do not
    consent: str = "allow"  # what the user answers at the consent screen: allow | deny
    access_lifetime: int = 3600
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    access_tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry
    refresh_tokens: set[str] = field(default_factory=set)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)

    def issue(self) -> tuple[str, str]:
        access, refresh = "at-" + secrets.token_urlsafe(16), "rt-" + secrets.token_urlsafe(16)
        self.access_tokens[access] = time.time() + self.access_lifetime
        self.refresh_tokens.add(refresh)
        return access, refresh

    def revoke_all(self) -> None:
        """The user removed the app's access at the provider."""
        self.access_tokens.clear()
        self.refresh_tokens.clear()

    def expire_access_tokens(self) -> None:
        for token in self.access_tokens:
            self.access_tokens[token] = 0

    def valid(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
        return self.access_tokens.get(token, 0) > time.time()

    async def authorize(self, request: Request) -> Response:
        params = dict(request.query_params)
        self.authorize_requests.append(params)
        redirect_uri = params.get("redirect_uri", "")
        if params.get("client_id") != self.client_id or not redirect_uri:
            return Response("unknown client or no redirect_uri", status_code=400)
        if params.get("response_type") != "code" or params.get("code_challenge_method") != "S256":
            return Response("response_type=code and code_challenge_method=S256 expected", 400)
        back = {"state": params.get("state", "")}
        if self.consent == "deny":
            back |= {"error": "access_denied", "error_description": "The user denied access"}
        else:
            code = "code-" + secrets.token_urlsafe(12)
            self.codes[code] = {
                "challenge": params.get("code_challenge", ""),
                "redirect_uri": redirect_uri,
            }
            back["code"] = code
        return RedirectResponse(f"{redirect_uri}?{urlencode(back)}", status_code=302)

    async def token(self, request: Request) -> Response:
        form = dict(await request.form())
        self.token_requests.append(form)
        if form.get("client_id") != self.client_id or (
            self.client_secret and form.get("client_secret") != self.client_secret
        ):
            return self._error(401, "invalid_client", "client authentication failed")
        if form.get("grant_type") == "authorization_code":
            grant = self.codes.pop(form.get("code", ""), None)  # a code works once
            if grant is None:
                return self._error(400, "invalid_grant", "code doesn't exist or has expired")
            if grant["redirect_uri"] != form.get("redirect_uri"):
                return self._error(400, "invalid_grant", "redirect_uri mismatch")
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant["challenge"]:
                return self._error(400, "invalid_grant", "invalid code verifier")
            access, refresh = self.issue()
            return self._tokens(access, refresh)
        if form.get("grant_type") == "refresh_token":
            old = form.get("refresh_token", "")
            if old not in self.refresh_tokens:
                return self._error(400, "invalid_grant", "Token has been expired or revoked.")
            access, refresh = self.issue()
            self.refresh_tokens.discard(refresh)
            if self.rotates_refresh_tokens:
                self.refresh_tokens.discard(old)
                self.refresh_tokens.add(refresh)
                return self._tokens(access, refresh)
            return self._tokens(access, None)
        return self._error(400, "unsupported_grant_type", "")

    def _tokens(self, access: str, refresh: str | None) -> Response:
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": self.access_lifetime,
        }
        if refresh:
            body["refresh_token"] = refresh
        return JSONResponse(body)

    @staticmethod
    def _error(status: int, error: str, description: str) -> Response:
        return JSONResponse({"error": error, "error_description": description}, status)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    size: int


class FakeCloud:
    """One fake provider: its OAuth server, its file API, what it was asked."""

    provider = ""

    def __init__(self, oauth: FakeOAuth):
        self.oauth = oauth
        self.requests: list[Recorded] = []
        self.base_url = ""
        self.app = Starlette(routes=self.routes())
        self.app.add_middleware(_RecordMiddleware, cloud=self)
        self.fail_next_upload = False  # answer the next upload chunk with a 500
        self.throttle = 0  # answer this many next requests 429 "slow down"
        self.commits = 0  # files created or replaced, by any kind of upload

    def routes(self) -> list[Route]:
        return [
            Route("/oauth2/authorize", self.oauth.authorize),
            Route("/oauth2/token", self.oauth.token, methods=["POST"]),
        ]

    def endpoints(self) -> dict[str, str]:
        """The GOALPORT_<PROVIDER>_<ENDPOINT>_URL settings that point goalport here."""
        raise NotImplementedError

    def files(self) -> dict[str, bytes]:
        """Every file the fake holds, by path, for the tests' assertions."""
        raise NotImplementedError


class _RecordMiddleware:
    def __init__(self, app: Any, cloud: FakeCloud):
        self.app, self.cloud = app, cloud

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.cloud.throttle > 0:
            self.cloud.throttle -= 1
            throttled = Response("slow down", status_code=429, headers={"Retry-After": "0.05"})
            await throttled(scope, receive, send)
            return
        if scope["type"] == "http":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            self.cloud.requests.append(
                Recorded(
                    scope["method"],
                    scope["raw_path"].decode()
                    + ("?" + scope["query_string"].decode() if scope["query_string"] else ""),
                    headers,
                    int(headers.get("content-length", 0)),
                )
            )
        await self.app(scope, receive, send)


# ---------------------------------------------------------------- Dropbox


def _dropbox_error(status: int, summary: str, error: dict[str, Any]) -> Response:
    return JSONResponse({"error_summary": summary + "/..", "error": error}, status)


def _dropbox_unauthorised(oauth: FakeOAuth, request: Request) -> Response:
    token = request.headers.get("authorization", "").removeprefix("Bearer ")
    tag = "expired_access_token" if token in oauth.access_tokens else "invalid_access_token"
    return _dropbox_error(401, tag, {".tag": tag})


class FakeDropbox(FakeCloud):
    provider = "dropbox"

    def __init__(self, oauth: FakeOAuth):
        self.store: dict[str, tuple[str, bytes]] = {}  # lower path -> (display path, bytes)
        self.folders: dict[str, str] = {}  # lower path -> display path
        self.sessions: dict[str, bytearray] = {}
        self.cursors: dict[str, list[dict[str, Any]]] = {}
        super().__init__(oauth)

    def routes(self) -> list[Route]:
        rpc = [
            ("files/list_folder", self.list_folder),
            ("files/list_folder/continue", self.list_folder_continue),
            ("files/get_metadata", self.get_metadata),
            ("files/delete_v2", self.delete),
            ("files/create_folder_v2", self.create_folder),
            ("files/move_v2", self.move),
        ]
        content = [
            ("files/download", self.download),
            ("files/upload", self.upload),
            ("files/upload_session/start", self.session_start),
            ("files/upload_session/append_v2", self.session_append),
            ("files/upload_session/finish", self.session_finish),
        ]
        return (
            super().routes()
            + [Route(f"/api/2/{n}", self._rpc(h), methods=["POST"]) for n, h in rpc]
            + [Route(f"/content/2/{n}", self._content(h), methods=["POST"]) for n, h in content]
        )

    def endpoints(self) -> dict[str, str]:
        return {
            "AUTHORIZE": f"{self.base_url}/oauth2/authorize",
            "TOKEN": f"{self.base_url}/oauth2/token",
            "API": f"{self.base_url}/api/2",
            "CONTENT": f"{self.base_url}/content/2",
        }

    def files(self) -> dict[str, bytes]:
        return {display.lstrip("/"): data for display, data in self.store.values()}

    def _rpc(self, handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            if not self.oauth.valid(request):
                return _dropbox_unauthorised(self.oauth, request)
            if request.headers.get("content-type", "").split(";")[0] != "application/json":
                return Response("Error in call: bad Content-Type", status_code=400)
            return handler(await request.json())

        return endpoint

    def _content(self, handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            if not self.oauth.valid(request):
                return _dropbox_unauthorised(self.oauth, request)
            raw = request.headers.get("dropbox-api-arg", "")
            if any(ord(c) > 0x7E for c in raw):
                return Response("Dropbox-API-Arg: non-ASCII must be escaped", status_code=400)
            return handler(json.loads(raw), await request.body(), request)

        return endpoint

    def _folder_of(self, lower: str) -> str:
        return lower.rpartition("/")[0]

    def _metadata(self, lower: str) -> dict[str, Any] | None:
        if lower in self.folders:
            display = self.folders[lower]
            return {
                ".tag": "folder",
                "name": display.rpartition("/")[2],
                "path_lower": lower,
                "path_display": display,
                "id": "id:" + hashlib.sha1(lower.encode()).hexdigest()[:12],
            }
        if lower in self.store:
            display, data = self.store[lower]
            return {
                ".tag": "file",
                "name": display.rpartition("/")[2],
                "path_lower": lower,
                "path_display": display,
                "id": "id:" + hashlib.sha1(lower.encode()).hexdigest()[:12],
                "size": len(data),
                "server_modified": "2026-12-04T22:00:00Z",
                "content_hash": hashlib.sha256(data).hexdigest(),
            }
        return None

    def _not_found(self, what: str = "path") -> Response:
        return _dropbox_error(409, f"{what}/not_found", {".tag": what, what: {".tag": "not_found"}})

    def list_folder(self, arg: dict[str, Any]) -> Response:
        lower = arg["path"].lower()
        if lower and lower not in self.folders:
            return self._not_found()
        children = sorted(
            p for p in [*self.folders, *self.store] if p != lower and self._folder_of(p) == lower
        )
        entries = [self._metadata(p) for p in children]
        return self._page([e for e in entries if e])

    def _page(self, entries: list[dict[str, Any]]) -> Response:
        cursor = secrets.token_hex(8)
        self.cursors[cursor] = entries[PAGE:]
        return JSONResponse(
            {"entries": entries[:PAGE], "cursor": cursor, "has_more": len(entries) > PAGE}
        )

    def list_folder_continue(self, arg: dict[str, Any]) -> Response:
        rest = self.cursors.pop(arg["cursor"], None)
        if rest is None:
            return _dropbox_error(409, "reset", {".tag": "reset"})
        return self._page(rest)

    def get_metadata(self, arg: dict[str, Any]) -> Response:
        metadata = self._metadata(arg["path"].lower())
        return JSONResponse(metadata) if metadata else self._not_found()

    def delete(self, arg: dict[str, Any]) -> Response:
        lower = arg["path"].lower()
        metadata = self._metadata(lower)
        if metadata is None:
            return self._not_found("path_lookup")
        for table in (self.store, self.folders):
            for path in [p for p in table if p == lower or p.startswith(lower + "/")]:
                del table[path]
        return JSONResponse({"metadata": metadata})

    def _make_parents(self, display: str) -> None:
        parent = display.rpartition("/")[0]
        while parent:
            self.folders.setdefault(parent.lower(), parent)
            parent = parent.rpartition("/")[0]

    def create_folder(self, arg: dict[str, Any]) -> Response:
        lower = arg["path"].lower()
        if lower in self.folders or lower in self.store:
            return _dropbox_error(409, "path/conflict/folder", {".tag": "path"})
        self._make_parents(arg["path"])
        self.folders[lower] = arg["path"]
        return JSONResponse({"metadata": self._metadata(lower)})

    def move(self, arg: dict[str, Any]) -> Response:
        source, target = arg["from_path"].lower(), arg["to_path"].lower()
        if self._metadata(source) is None:
            return self._not_found("from_lookup")
        if self._metadata(target) is not None:
            return _dropbox_error(409, "to/conflict/file", {".tag": "to"})
        self._make_parents(arg["to_path"])

        def moved(path: str) -> str:
            return arg["to_path"] + path[len(source) :]

        def below(path: str) -> bool:
            return path.lower() == source or path.lower().startswith(source + "/")

        for lower in [p for p in self.store if below(p)]:
            display, data = self.store.pop(lower)
            self.store[moved(lower).lower()] = (moved(display), data)
        for lower in [p for p in self.folders if below(p)]:
            display = self.folders.pop(lower)
            self.folders[moved(lower).lower()] = moved(display)
        return JSONResponse({"metadata": self._metadata(target)})

    def download(self, arg: dict[str, Any], body: bytes, request: Request) -> Response:
        lower = arg["path"].lower()
        if lower not in self.store:
            return self._not_found()
        data = self.store[lower][1]
        result = {"Dropbox-API-Result": json.dumps(self._metadata(lower))}
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("range", ""))
        if not match:
            return Response(data, headers=result)
        start = int(match.group(1))
        end = int(match.group(2)) + 1 if match.group(2) else len(data)
        return Response(data[start:end], status_code=206, headers=result)

    def _commit(self, commit: dict[str, Any], data: bytes) -> Response:
        if self.fail_next_upload:
            self.fail_next_upload = False
            return Response("upstream trouble", status_code=500)
        lower = commit["path"].lower()
        if lower in self.store and commit.get("mode", "add") != "overwrite":
            return _dropbox_error(409, "path/conflict/file", {".tag": "path"})
        self._make_parents(commit["path"])
        # the parent keeps the case it was created with; the new name the case given
        parent, _, name = commit["path"].rpartition("/")
        display = f"{self.folders.get(parent.lower(), parent)}/{name}"
        self.store[lower] = (self.store.get(lower, (display,))[0], data)
        self.commits += 1
        return JSONResponse(self._metadata(lower))

    def upload(self, arg: dict[str, Any], body: bytes, request: Request) -> Response:
        return self._commit(arg, body)

    def session_start(self, arg: dict[str, Any], body: bytes, request: Request) -> Response:
        session_id = "sess-" + secrets.token_hex(8)
        self.sessions[session_id] = bytearray(body)
        return JSONResponse({"session_id": session_id})

    def _session(self, cursor: dict[str, Any]) -> bytearray | Response:
        data = self.sessions.get(cursor["session_id"])
        if data is None:
            return _dropbox_error(409, "lookup_failed/not_found", {".tag": "not_found"})
        if cursor["offset"] != len(data):
            return _dropbox_error(
                409,
                "lookup_failed/incorrect_offset",
                {".tag": "incorrect_offset", "correct_offset": len(data)},
            )
        return data

    def session_append(self, arg: dict[str, Any], body: bytes, request: Request) -> Response:
        if self.fail_next_upload:
            self.fail_next_upload = False
            return Response("upstream trouble", status_code=500)
        data = self._session(arg["cursor"])
        if isinstance(data, Response):
            return data
        data += body
        return JSONResponse(None)

    def session_finish(self, arg: dict[str, Any], body: bytes, request: Request) -> Response:
        data = self._session(arg["cursor"])
        if isinstance(data, Response):
            return data
        response = self._commit(arg["commit"], bytes(data + body))
        if response.status_code == 200:
            del self.sessions[arg["cursor"]["session_id"]]
        return response


# ---------------------------------------------------------------- Google Drive

FOLDER = "application/vnd.google-apps.folder"
_LITERAL = r"'((?:[^'\\]|\\.)*)'"
_QUERY = re.compile(rf"(?:name = {_LITERAL} and )?{_LITERAL} in parents and trashed = false")


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _google_error(status: int, message: str, reason: str, state: str) -> Response:
    return JSONResponse(
        {
            "error": {
                "code": status,
                "message": message,
                "errors": [{"message": message, "domain": "global", "reason": reason}],
                "status": state,
            }
        },
        status,
    )


class FakeGoogleDrive(FakeCloud):
    provider = "gdrive"

    def __init__(self, oauth: FakeOAuth):
        self.items: dict[str, dict[str, Any]] = {}  # id -> name, mimeType, parents, data
        self.sessions: dict[str, dict[str, Any]] = {}
        super().__init__(oauth)

    def routes(self) -> list[Route]:
        return super().routes() + [
            Route("/drive/v3/files", self.files_collection, methods=["GET", "POST"]),
            Route("/drive/v3/files/{file_id}", self.file, methods=["GET", "DELETE", "PATCH"]),
            Route("/upload/drive/v3/files", self.upload, methods=["POST", "PUT"]),
            Route("/upload/drive/v3/files/{file_id}", self.upload, methods=["PATCH", "PUT"]),
        ]

    def endpoints(self) -> dict[str, str]:
        return {
            "AUTHORIZE": f"{self.base_url}/oauth2/authorize",
            "TOKEN": f"{self.base_url}/oauth2/token",
            "API": f"{self.base_url}/drive/v3",
            "UPLOAD": f"{self.base_url}/upload/drive/v3",
        }

    def _path(self, file_id: str) -> str:
        item = self.items[file_id]
        parent = item["parents"][0]
        return item["name"] if parent == "root" else f"{self._path(parent)}/{item['name']}"

    def files(self) -> dict[str, bytes]:
        return {
            self._path(i): item["data"]
            for i, item in self.items.items()
            if item["mimeType"] != FOLDER
        }

    def _resource(self, file_id: str) -> dict[str, Any]:
        item = self.items[file_id]
        resource = {"kind": "drive#file", "id": file_id, "name": item["name"]}
        resource["mimeType"] = item["mimeType"]
        if item["mimeType"] != FOLDER:
            resource["size"] = str(len(item["data"]))  # Drive sends int64 as a string
        return resource

    def _unauthorised(self) -> Response:
        return _google_error(
            401,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, "
            "login cookie or other valid authentication credential.",
            "authError",
            "UNAUTHENTICATED",
        )

    async def files_collection(self, request: Request) -> Response:
        if not self.oauth.valid(request):
            return self._unauthorised()
        if request.method == "POST":  # metadata-only create: how folders are made
            body = await request.json()
            file_id = secrets.token_urlsafe(12)
            self.items[file_id] = {
                "name": body["name"],
                "mimeType": body.get("mimeType", "application/octet-stream"),
                "parents": body.get("parents") or ["root"],
                "data": b"",
            }
            return JSONResponse(self._resource(file_id))
        match = _QUERY.fullmatch(request.query_params.get("q", ""))
        if not match:
            return _google_error(400, "Invalid Value", "invalid", "INVALID_ARGUMENT")
        name = _unescape(match.group(1)) if match.group(1) is not None else None
        parent = _unescape(match.group(2))
        found = [
            i
            for i, item in sorted(self.items.items())
            if item["parents"][0] == parent and (name is None or item["name"] == name)
        ]
        start = int(request.query_params.get("pageToken", "0"))
        size = min(int(request.query_params.get("pageSize", "100")), PAGE)
        body: dict[str, Any] = {"files": [self._resource(i) for i in found[start : start + size]]}
        if start + size < len(found):
            body["nextPageToken"] = str(start + size)
        return JSONResponse(body)

    async def file(self, request: Request) -> Response:
        if not self.oauth.valid(request):
            return self._unauthorised()
        file_id = request.path_params["file_id"]
        if file_id not in self.items:
            return _google_error(404, f"File not found: {file_id}.", "notFound", "NOT_FOUND")
        if request.method == "PATCH":  # files.update: rename, move between parents
            item = self.items[file_id]
            body = await request.json()
            if "name" in body:
                item["name"] = body["name"]
            remove = request.query_params.get("removeParents")
            add = request.query_params.get("addParents")
            if remove and remove in item["parents"]:
                item["parents"] = [p for p in item["parents"] if p != remove]
            if add:
                item["parents"] = [add, *item["parents"]]
            return JSONResponse(self._resource(file_id))
        if request.method == "DELETE":
            doomed = [file_id]
            while doomed:
                current = doomed.pop()
                doomed += [i for i, it in self.items.items() if it["parents"][0] == current]
                self.items.pop(current, None)
            return Response(status_code=204)
        if request.query_params.get("alt") != "media":
            return JSONResponse(self._resource(file_id))
        data = self.items[file_id]["data"]
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("range", ""))
        if not match:
            return Response(data)
        start = int(match.group(1))
        end = int(match.group(2)) + 1 if match.group(2) else len(data)
        return Response(data[start:end], status_code=206)

    async def upload(self, request: Request) -> Response:
        if request.query_params.get("uploadType") != "resumable":
            return _google_error(
                400, "uploadType=resumable expected", "invalid", "INVALID_ARGUMENT"
            )
        upload_id = request.query_params.get("upload_id")
        if upload_id is None:  # initiating: POST (new file) or PATCH (new content)
            if not self.oauth.valid(request):
                return self._unauthorised()
            file_id = request.path_params.get("file_id")
            if file_id is not None and file_id not in self.items:
                return _google_error(404, f"File not found: {file_id}.", "notFound", "NOT_FOUND")
            metadata = await request.json()
            upload_id = secrets.token_urlsafe(16)
            self.sessions[upload_id] = {
                "file_id": file_id,
                "metadata": metadata,
                "data": bytearray(),
            }
            location = f"{request.url.replace(query='')}?uploadType=resumable&upload_id={upload_id}"
            return Response(status_code=200, headers={"Location": location})
        session = self.sessions.get(upload_id)
        if session is None:
            return _google_error(404, "No such upload session", "notFound", "NOT_FOUND")
        if self.fail_next_upload:
            self.fail_next_upload = False
            return _google_error(500, "Backend Error", "backendError", "INTERNAL")
        body = await request.body()
        match = re.fullmatch(
            r"bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)", request.headers.get("content-range", "")
        )
        if not match:
            return _google_error(400, "Invalid Content-Range", "invalid", "INVALID_ARGUMENT")
        data = session["data"]
        if match.group(1) is not None:
            start, end = int(match.group(1)), int(match.group(2))
            if start != len(data) or end - start + 1 != len(body):
                return _google_error(
                    400, "Content-Range does not follow", "invalid", "INVALID_ARGUMENT"
                )
            data += body
        if match.group(3) == "*":
            if len(body) % DRIVE_UNIT:
                return _google_error(
                    400, "chunk not a multiple of 256 KiB", "invalid", "INVALID_ARGUMENT"
                )
            return Response(status_code=308, headers={"Range": f"bytes=0-{len(data) - 1}"})
        if int(match.group(3)) != len(data):
            return _google_error(400, "size mismatch", "invalid", "INVALID_ARGUMENT")
        del self.sessions[upload_id]
        file_id = session["file_id"]
        if file_id is None:
            file_id = secrets.token_urlsafe(12)
            metadata = session["metadata"]
            self.items[file_id] = {
                "name": metadata["name"],
                "mimeType": "application/octet-stream",
                "parents": metadata.get("parents") or ["root"],
                "data": b"",
            }
            status = 200
        else:
            status = 200
        self.items[file_id]["data"] = bytes(data)
        self.commits += 1
        return JSONResponse(self._resource(file_id), status)


# ---------------------------------------------------------------- OneDrive (Graph)


def _graph_error(status: int, code: str, message: str) -> Response:
    return JSONResponse({"error": {"code": code, "message": message, "innerError": {}}}, status)


class FakeOneDrive(FakeCloud):
    provider = "onedrive"

    def __init__(self, oauth: FakeOAuth):
        self.store: dict[str, bytes] = {}
        self.folders: set[str] = set()
        self.sessions: dict[str, dict[str, Any]] = {}
        self.downloads: dict[str, str] = {}
        super().__init__(oauth)

    def routes(self) -> list[Route]:
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        return super().routes() + [
            Route("/v1.0/me/drive/{rest:path}", self.drive, methods=methods),
            Route("/upload-session/{session_id}", self.session, methods=["PUT", "DELETE"]),
            Route("/download/{token}", self.download, methods=["GET"]),
        ]

    def endpoints(self) -> dict[str, str]:
        return {
            "AUTHORIZE": f"{self.base_url}/oauth2/authorize",
            "TOKEN": f"{self.base_url}/oauth2/token",
            "API": f"{self.base_url}/v1.0",
        }

    def files(self) -> dict[str, bytes]:
        return dict(self.store)

    def _item(self, path: str) -> dict[str, Any] | None:
        name = path.rpartition("/")[2] or "root"
        if path == "" or path in self.folders:
            children = [p for p in [*self.folders, *self.store] if p.rpartition("/")[0] == path]
            return {"id": path or "root", "name": name, "folder": {"childCount": len(children)}}
        if path in self.store:
            return {"id": path, "name": name, "size": len(self.store[path]), "file": {}}
        return None

    def _not_found(self) -> Response:
        return _graph_error(404, "itemNotFound", "The resource could not be found.")

    async def drive(self, request: Request) -> Response:
        if not self.oauth.valid(request):
            return _graph_error(
                401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid."
            )
        # parsed from the raw path: a name may hold an encoded ':' or '/'
        raw = request.scope["raw_path"].decode().split("/me/drive/", 1)[1]
        match = re.fullmatch(r"root(?::/([^:]*)(?::/?(\w*))?|/(\w+))?", raw)
        if not match:
            return _graph_error(400, "invalidRequest", "Invalid request")
        path = "/".join(unquote(p) for p in (match.group(1) or "").split("/") if p)
        action = match.group(2) or match.group(3) or ""
        handler = {
            ("GET", ""): self.get_item,
            ("DELETE", ""): self.delete_item,
            ("PATCH", ""): self.update_item,
            ("GET", "children"): self.children,
            ("POST", "children"): self.create_child,
            ("GET", "content"): self.content,
            ("PUT", "content"): self.put_content,
            ("POST", "createUploadSession"): self.create_session,
        }.get((request.method, action))
        if handler is None:
            return _graph_error(400, "invalidRequest", "Invalid request")
        return await handler(request, path)

    async def get_item(self, request: Request, path: str) -> Response:
        item = self._item(path)
        return JSONResponse(item) if item else self._not_found()

    async def delete_item(self, request: Request, path: str) -> Response:
        if self._item(path) is None or not path:
            return self._not_found()
        self.store = {
            p: d for p, d in self.store.items() if p != path and not p.startswith(path + "/")
        }
        self.folders = {p for p in self.folders if p != path and not p.startswith(path + "/")}
        return Response(status_code=204)

    async def update_item(self, request: Request, path: str) -> Response:
        """Rename or move (driveitem-move): a new parentReference id and/or name."""
        if self._item(path) is None or not path:
            return self._not_found()
        body = await request.json()
        parent = body.get("parentReference", {}).get("id", path.rpartition("/")[0] or "root")
        parent = "" if parent == "root" else parent
        if parent and parent not in self.folders:
            return self._not_found()
        target = f"{parent}/{body.get('name', path.rpartition('/')[2])}".lstrip("/")
        behaviour = request.query_params.get("@microsoft.graph.conflictBehavior", "fail")
        if self._item(target) is not None and target != path:
            if behaviour != "replace":
                return _graph_error(
                    409, "nameAlreadyExists", "An item with the same name already exists."
                )
            self.store.pop(target, None)
        for path_of in [p for p in self.store if p == path or p.startswith(path + "/")]:
            self.store[target + path_of[len(path) :]] = self.store.pop(path_of)
        moved = {p for p in self.folders if p == path or p.startswith(path + "/")}
        self.folders = (self.folders - moved) | {target + p[len(path) :] for p in moved}
        return JSONResponse(self._item(target))

    async def children(self, request: Request, path: str) -> Response:
        if path and path not in self.folders:
            return self._not_found()
        names = sorted(p for p in [*self.folders, *self.store] if p.rpartition("/")[0] == path)
        skip = int(request.query_params.get("$skiptoken", "0"))
        body: dict[str, Any] = {"value": [self._item(p) for p in names[skip : skip + PAGE]]}
        if skip + PAGE < len(names):
            body["@odata.nextLink"] = f"{request.url.replace(query='')}?$skiptoken={skip + PAGE}"
        return JSONResponse(body)

    async def create_child(self, request: Request, path: str) -> Response:
        body = await request.json()
        child = f"{path}/{body['name']}" if path else body["name"]
        if path and path not in self.folders:
            return self._not_found()
        if self._item(child) is not None:
            return _graph_error(
                409, "nameAlreadyExists", "An item with the same name already exists."
            )
        self.folders.add(child)
        return JSONResponse(self._item(child), 201)

    def _parents(self, path: str) -> None:
        parent = path.rpartition("/")[0]
        while parent:
            self.folders.add(parent)
            parent = parent.rpartition("/")[0]

    async def content(self, request: Request, path: str) -> Response:
        if path not in self.store:
            return self._not_found()
        token = secrets.token_urlsafe(16)
        self.downloads[token] = path
        return RedirectResponse(f"{self.base_url}/download/{token}", status_code=302)

    async def download(self, request: Request) -> Response:
        path = self.downloads.get(request.path_params["token"])
        if path is None or path not in self.store:
            return self._not_found()
        data = self.store[path]
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("range", ""))
        if not match:
            return Response(data)
        start = int(match.group(1))
        end = int(match.group(2)) + 1 if match.group(2) else len(data)
        return Response(data[start:end], status_code=206)

    async def put_content(self, request: Request, path: str) -> Response:
        existed = path in self.store
        self._parents(path)
        self.store[path] = await request.body()
        self.commits += 1
        return JSONResponse(self._item(path), 200 if existed else 201)

    async def create_session(self, request: Request, path: str) -> Response:
        body = await request.json()
        behaviour = body.get("item", {}).get("@microsoft.graph.conflictBehavior", "replace")
        session_id = secrets.token_urlsafe(16)
        self.sessions[session_id] = {"path": path, "data": bytearray(), "behaviour": behaviour}
        return JSONResponse(
            {
                "uploadUrl": f"{self.base_url}/upload-session/{session_id}",
                "expirationDateTime": "2026-12-05T22:00:00Z",
                "nextExpectedRanges": ["0-"],
            }
        )

    async def session(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        session = self.sessions.get(session_id)
        if session is None:
            return _graph_error(404, "itemNotFound", "The upload session was not found.")
        if request.method == "DELETE":
            del self.sessions[session_id]
            return Response(status_code=204)
        if "authorization" in request.headers:
            # "Including the Authorization header when issuing the PUT call may result in an
            # HTTP 401 Unauthorized response."
            return _graph_error(401, "unauthenticated", "Authorization is not expected here")
        if self.fail_next_upload:
            self.fail_next_upload = False
            return _graph_error(500, "generalException", "An unspecified error has occurred.")
        body = await request.body()
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", request.headers.get("content-range", ""))
        data = session["data"]
        if (
            not match
            or int(match.group(1)) != len(data)
            or int(match.group(2)) - int(match.group(1)) + 1 != len(body)
        ):
            return _graph_error(416, "invalidRange", "The fragment does not follow")
        total = int(match.group(3))
        data += body
        if len(data) < total:
            if len(body) % GRAPH_UNIT:
                return _graph_error(400, "invalidRequest", "fragment not a multiple of 320 KiB")
            return JSONResponse(
                {
                    "expirationDateTime": "2026-12-05T22:00:00Z",
                    "nextExpectedRanges": [f"{len(data)}-"],
                },
                202,
            )
        del self.sessions[session_id]
        path = session["path"]
        existed = path in self.store
        if existed and session["behaviour"] == "fail":
            return _graph_error(
                409, "nameAlreadyExists", "An item with the same name already exists."
            )
        self._parents(path)
        self.store[path] = bytes(data)
        self.commits += 1
        return JSONResponse(self._item(path), 200 if existed else 201)


# ---------------------------------------------------------------- serving


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CLIENT_IDS = {"dropbox": "dbx-client", "gdrive": "gdrive-client.apps", "onedrive": "od-client"}
CLIENT_SECRETS = {"dropbox": "dbx-secret", "gdrive": "gdrive-secret", "onedrive": "od-secret"}
CLASSES: dict[str, type[FakeCloud]] = {
    "dropbox": FakeDropbox,
    "gdrive": FakeGoogleDrive,
    "onedrive": FakeOneDrive,
}


def make_fake(provider: str) -> FakeCloud:
    oauth = FakeOAuth(
        CLIENT_IDS[provider],
        CLIENT_SECRETS[provider],
        rotates_refresh_tokens=provider == "onedrive",
    )
    return CLASSES[provider](oauth)


@dataclass
class Serving:
    server: uvicorn.Server
    thread: threading.Thread


def serve(fake: FakeCloud) -> Serving:
    """Run the fake on a free loopback port in a thread; fake.base_url says where."""
    port = free_port()
    fake.base_url = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(
        uvicorn.Config(
            fake.app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="off"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the fake {fake.provider} did not start")
        time.sleep(0.02)
    return Serving(server, thread)


def stop(serving: Serving) -> None:
    serving.server.should_exit = True
    serving.thread.join(timeout=10)


def point_goalport_at(fake: FakeCloud, monkeypatch: Any) -> None:
    """Set the settings that send goalport's requests for `fake.provider` to the fake."""
    prefix = f"GOALPORT_{fake.provider.upper()}"
    for endpoint, url in fake.endpoints().items():
        monkeypatch.setenv(f"{prefix}_{endpoint}_URL", url)
    monkeypatch.setenv(f"{prefix}_CLIENT_ID", fake.oauth.client_id)
    monkeypatch.setenv(f"{prefix}_CLIENT_SECRET", fake.oauth.client_secret)


def connected_secrets(fake: FakeCloud) -> dict[str, str]:
    """Tokens as if the user had just connected (the OAuth flow is tested on its own)."""
    access, refresh = fake.oauth.issue()
    return {
        "access_token": access,
        "refresh_token": refresh,
        "expires_at": str(int(time.time()) + fake.oauth.access_lifetime),
    }


def iter_providers() -> Iterator[str]:
    yield from CLASSES
