"""Frozen records written out: what ``@dataclass(frozen=True)`` generates,
without paying for it at import.

``dataclass()`` builds each class's methods as source text and compiles it
(``exec``) when the module is imported, and importing ``dataclasses`` loads
``inspect``, ``ast``, ``dis`` and ``tokenize``: together about one bare
interpreter's start-up on every ``account list`` (docs/performance.md,
issue 12). A record class here lists its fields in ``_fields`` and writes its
own ``__init__`` (into ``__dict__``: twice as fast as a frozen dataclass's
``object.__setattr__`` per field, which matters for ``Account(**row)`` on a
10,000-account list); ``Record`` supplies the rest as the dataclass would:
``repr`` (``_hidden`` fields left out), equality and hash by field values
within one class, and ``FrozenInstanceError`` (an ``AttributeError``) on
assignment. tests/core/test_records.py checks each record against the
dataclass it replaces.
"""

from __future__ import annotations


class FrozenInstanceError(AttributeError):
    """Assigning to or deleting a field of a frozen record (``dataclasses``' own
    error of that name is an ``AttributeError`` too)."""


class Record:
    _fields: tuple[str, ...] = ()
    _hidden: tuple[str, ...] = ()  # fields left out of repr (a password hash)

    def _values(self) -> tuple:
        d = self.__dict__
        return tuple(d[name] for name in self._fields)

    def __repr__(self) -> str:
        d = self.__dict__
        shown = ", ".join(f"{name}={d[name]!r}" for name in self._fields if name not in self._hidden)
        return f"{type(self).__qualname__}({shown})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._values() == other._values()  # type: ignore[attr-defined]
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")
