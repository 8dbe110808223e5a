"""A sequence that computes each element from its source as it is read, and keeps nothing:
how tens of thousands of items or results pass through the bridge a page at a time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar, overload

__all__ = ["Mapped"]

T = TypeVar("T")


class Mapped(Sequence[T]):
    """`function(source[i])` at each read of element `i`: a fresh value every time."""

    def __init__(self, function: Callable[[Any], T], source: Sequence[Any]) -> None:
        self._function = function
        self._source = source

    def __len__(self) -> int:
        return len(self._source)

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            return [self._function(value) for value in self._source[index]]
        return self._function(self._source[index])
