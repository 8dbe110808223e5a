"""The SDK base of the adapters: the client, made on first use and bounded by `timeout_s`."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

from batch_bridge.providers._handles import Part, retry_or_fail

__all__ = ["SdkAdapter"]

_C = TypeVar("_C")


class SdkAdapter(Generic[_C]):
    """Holds an adapter's SDK client: made on first use (so importing needs no API key),
    each request bounded by `timeout_s`, plus a copy without SDK retries for the calls
    that create things, which the adapters retry themselves, or not at all."""

    max_attempts: int
    retry_backoff_s: float
    _on_retry: ClassVar[Mapping[str, Any]] = {}
    """Fields a part resets when it is retried."""
    _on_failure: ClassVar[Mapping[str, Any]] = {}
    """Fields a part drops when it fails for good."""

    def __init__(self, client: _C | None, timeout_s: float | None) -> None:
        self.timeout_s = timeout_s
        if client is not None and self.timeout_s is not None:
            client = self._with_options(client, timeout=self.timeout_s)
        self._client = client
        self._quiet: tuple[_C, _C] | None = None

    def _new_client(self, **options: Any) -> _C:
        raise NotImplementedError

    def _with_options(self, client: _C, **options: Any) -> _C:
        raise NotImplementedError

    @property
    def client(self) -> _C:
        """The SDK client."""
        if self._client is None:
            options = {} if self.timeout_s is None else {"timeout": self.timeout_s}
            self._client = self._new_client(**options)
        return self._client

    def _retry_or_fail(
        self, part: Part, message: str, code: str, now: int, **on_retry: Any
    ) -> None:
        retry_or_fail(
            part,
            message,
            code,
            now,
            max_attempts=self.max_attempts,
            backoff_s=self.retry_backoff_s,
            on_retry={**self._on_retry, **on_retry},
            on_failure=copy.deepcopy(dict(self._on_failure)),
        )

    def _quiet_client(self) -> _C:
        client = self.client
        if self._quiet is None or self._quiet[0] is not client:
            self._quiet = (client, self._with_options(client, max_retries=0))
        return self._quiet[1]
