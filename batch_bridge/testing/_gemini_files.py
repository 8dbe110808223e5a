"""The emulator's Gemini Files API: resumable uploads, metadata, downloads and deletes, as
the `google-genai` SDK calls them (`client.aio.files.upload/get/download/delete`).

An upload starts with `POST /upload/v1beta/files` (`X-Goog-Upload-Command: start`), whose
answer names the upload URL in `x-goog-upload-url`; the SDK then posts the bytes there in
chunks (`upload`, the last one `upload, finalize`), and the final answer is `{"file": ...}`
with `x-goog-upload-status: final`. Only files the emulator generated (batch results) can
be downloaded, as with the real service.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = ["GeminiApiError", "GeminiFiles", "rfc3339"]

_KEEP_S = 48 * 3600.0


class GeminiApiError(Exception):
    """Answered as Google's error JSON with the given HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def rfc3339(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class StoredFile:
    name: str
    display_name: str
    mime_type: str
    data: bytes
    created: float
    generated: bool

    def view(self, base_url: str) -> dict[str, Any]:
        """The `File` resource; `base_url` is the server root, with its `/`."""
        view = {
            "name": self.name,
            "displayName": self.display_name,
            "mimeType": self.mime_type,
            "sizeBytes": str(len(self.data)),
            "createTime": rfc3339(self.created),
            "updateTime": rfc3339(self.created),
            "expirationTime": rfc3339(self.created + _KEEP_S),
            "sha256Hash": hashlib.sha256(self.data).hexdigest(),
            "uri": f"{base_url}gemini/v1beta/{self.name}",
            "state": "ACTIVE",
            "source": "GENERATED" if self.generated else "UPLOADED",
        }
        if self.generated:
            view["downloadUri"] = f"{base_url}gemini/v1beta/{self.name}:download?alt=media"
        return view


@dataclass(slots=True)
class _Upload:
    meta: dict[str, Any]
    size: int
    data: bytearray


class GeminiFiles:
    """Stored files by name (`files/<id>`), and the uploads under way."""

    def __init__(self, *, lock: threading.Lock, clock: Callable[[], float]) -> None:
        self._lock = lock
        self._clock = clock
        self.files: dict[str, StoredFile] = {}
        self._uploads: dict[str, _Upload] = {}
        self.uploaded = 0
        self.deleted = 0

    def get(self, name: str) -> StoredFile:
        """The file `files/<id>`; a 404 for one that does not exist (or was deleted)."""
        stored = self.files.get(name)
        if stored is None:
            raise GeminiApiError(404, f"File {name} does not exist.")
        return stored

    def store(self, display_name: str, data: bytes, *, generated: bool) -> StoredFile:
        stored = StoredFile(
            name="files/" + uuid.uuid4().hex[:16],
            display_name=display_name,
            mime_type="application/jsonl",
            data=data,
            created=self._clock(),
            generated=generated,
        )
        self.files[stored.name] = stored
        return stored

    async def upload(self, request: Request) -> Response:
        command = request.headers.get("x-goog-upload-command", "")
        if command == "start":
            return await self._start(request)
        upload_id = request.query_params.get("upload_id", "")
        data = await request.body()
        with self._lock:
            upload = self._uploads.get(upload_id)
            if upload is None:
                raise GeminiApiError(404, f"No upload session {upload_id!r}.")
            offset = int(request.headers.get("x-goog-upload-offset", "0"))
            if offset != len(upload.data):
                raise GeminiApiError(400, f"Upload offset {offset} != {len(upload.data)}.")
            upload.data += data
            if "finalize" not in command:
                return Response(headers={"x-goog-upload-status": "active"})
            del self._uploads[upload_id]
            if len(upload.data) != upload.size:
                message = f"Upload of {len(upload.data)} bytes; {upload.size} were announced."
                raise GeminiApiError(400, message)
            file = upload.meta
            stored = self.store(
                str(file.get("displayName") or ""), bytes(upload.data), generated=False
            )
            stored.mime_type = str(file.get("mimeType") or "application/octet-stream")
            self.uploaded += 1
            view = stored.view(str(request.base_url))
        return JSONResponse({"file": view}, headers={"x-goog-upload-status": "final"})

    async def _start(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = {}
        meta = body.get("file") if isinstance(body, dict) else None
        size = request.headers.get("x-goog-upload-header-content-length", "")
        if not size.isdigit():
            raise GeminiApiError(400, "X-Goog-Upload-Header-Content-Length is required.")
        upload_id = uuid.uuid4().hex
        with self._lock:
            self._uploads[upload_id] = _Upload(
                meta=meta if isinstance(meta, dict) else {}, size=int(size), data=bytearray()
            )
        version = request.path_params["version"]
        url = f"{request.base_url}gemini/upload/{version}/files?upload_id={upload_id}"
        return Response(headers={"x-goog-upload-url": url, "x-goog-upload-status": "active"})

    async def metadata(self, request: Request) -> Response:
        with self._lock:
            stored = self.get("files/" + request.path_params["file"])
            return JSONResponse(stored.view(str(request.base_url)))

    async def download(self, request: Request) -> Response:
        with self._lock:
            stored = self.get("files/" + request.path_params["file"])
            if not stored.generated:
                raise GeminiApiError(
                    400, f"File {stored.name} was uploaded; only generated files can be downloaded."
                )
            data = stored.data
        return Response(data, media_type="application/octet-stream")

    async def delete(self, request: Request) -> Response:
        with self._lock:
            stored = self.get("files/" + request.path_params["file"])
            del self.files[stored.name]
            self.deleted += 1
        return JSONResponse({})
