"""The emulator's Files API: uploaded and generated files, kept in memory."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from batch_bridge.testing._http import ApiError, page, reply

__all__ = ["FileStore", "StoredFile", "expiry_s"]

Handler = Callable[[Request], Awaitable[Response]]

_UPLOAD_PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
_LIFETIME_S = (3600, 30 * 86400)


def expiry_s(raw: Any, param: str) -> float | None:
    """Seconds of an `expires_after` / `output_expires_after` policy, checked as the API does
    (`{"anchor": "created_at", "seconds": 3600..2592000}`); None when absent."""
    if raw is None:
        return None
    anchor = raw.get("anchor") if isinstance(raw, dict) else None
    if anchor != "created_at":
        raise ApiError(400, f"{param}.anchor must be 'created_at'.", param=f"{param}.anchor")
    try:
        seconds = int(raw.get("seconds"))
    except (TypeError, ValueError):
        seconds = -1
    if not _LIFETIME_S[0] <= seconds <= _LIFETIME_S[1]:
        message = f"{param}.seconds must be between 3600 and 2592000, got {raw.get('seconds')!r}."
        raise ApiError(400, message, param=f"{param}.seconds")
    return float(seconds)


@dataclass(frozen=True, slots=True)
class StoredFile:
    """An uploaded or generated file and its bytes."""

    id: str
    filename: str
    purpose: str
    data: bytes
    created: float
    expires_after_s: float | None = None

    def view(self) -> dict[str, Any]:
        """The File object as the API returns it."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": int(self.created),
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
            "expires_at": (
                None if self.expires_after_s is None else int(self.created + self.expires_after_s)
            ),
        }


class FileStore:
    """Files by id and the `/v1/files` routes over them; guarded by the emulator's lock
    (`store` and `get` expect the caller to hold it)."""

    def __init__(
        self, *, lock: threading.Lock, clock: Callable[[], float], max_bytes: Callable[[], int]
    ) -> None:
        self._lock = lock
        self._clock = clock
        self._max_bytes = max_bytes
        self.files: dict[str, StoredFile] = {}
        self.uploaded = 0
        self.deleted = 0

    def handlers(self) -> dict[str, Handler]:
        """Route labels (`"METHOD /path"`, the names `add_fault` takes) and their handlers."""
        return {
            "POST /v1/files": self._create,
            "GET /v1/files": self._list,
            "GET /v1/files/{file_id}": self._get,
            "DELETE /v1/files/{file_id}": self._delete,
            "GET /v1/files/{file_id}/content": self._content,
        }

    def store(
        self,
        filename: str,
        purpose: str,
        data: bytes,
        now: float,
        expires_after_s: float | None = None,
    ) -> StoredFile:
        stored = StoredFile(
            "file-" + uuid.uuid4().hex[:24], filename, purpose, data, now, expires_after_s
        )
        self.files[stored.id] = stored
        return stored

    def get(self, file_id: str) -> StoredFile:
        if file_id not in self.files:
            raise ApiError(404, f"No such File object: {file_id}", param="id")
        return self.files[file_id]

    async def _create(self, request: Request) -> Response:
        async with request.form(max_files=1, max_fields=16) as form:
            purpose = form.get("purpose")
            upload = form.get("file")
            if not isinstance(purpose, str) or not purpose:
                raise ApiError(400, "Missing required parameter: 'purpose'.", param="purpose")
            if purpose not in _UPLOAD_PURPOSES:
                message = f"Invalid value for 'purpose': {purpose!r}."
                raise ApiError(400, message, param="purpose", code="invalid_value")
            if not isinstance(upload, UploadFile):
                raise ApiError(400, "Missing required parameter: 'file'.", param="file")
            data = await upload.read()
            filename = upload.filename or "upload"
            policy = {k: form.get(f"expires_after[{k}]") for k in ("anchor", "seconds")}
            lifetime = expiry_s(policy if any(policy.values()) else None, "expires_after")
        limit = self._max_bytes()
        if len(data) > limit:
            message = f"File is too large: {len(data)} bytes; the maximum is {limit} bytes."
            raise ApiError(400, message, param="file", code="file_too_large")
        with self._lock:
            stored = self.store(filename, purpose, data, self._clock(), lifetime)
            self.uploaded += 1
        return reply(stored.view())

    async def _list(self, request: Request) -> Response:
        purpose = request.query_params.get("purpose")
        order = request.query_params.get("order", "desc")
        if order not in ("asc", "desc"):
            message = f"Invalid order {order!r}: expected 'asc' or 'desc'."
            raise ApiError(400, message, param="order")
        with self._lock:
            files = [f.view() for f in self.files.values()]
        wanted = [f for f in files if purpose in (None, f["purpose"])]
        if order == "desc":
            wanted.reverse()
        return reply(page(wanted, request, maximum=10_000, default=10_000))

    async def _get(self, request: Request) -> Response:
        with self._lock:
            return reply(self.get(request.path_params["file_id"]).view())

    async def _delete(self, request: Request) -> Response:
        with self._lock:
            stored = self.get(request.path_params["file_id"])
            del self.files[stored.id]
            self.deleted += 1
        return reply({"id": stored.id, "object": "file", "deleted": True})

    async def _content(self, request: Request) -> Response:
        with self._lock:
            stored = self.get(request.path_params["file_id"])
        return Response(stored.data, media_type="application/octet-stream")
