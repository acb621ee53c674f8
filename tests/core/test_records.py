"""The written-out frozen records (core/records.py) behave as the
``@dataclass(frozen=True)`` classes they replaced: same constructor, repr,
equality, hash, match arguments and refusal to change."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from smtpctl.core.models import Account, Agency, Credential, Domain, Outcome
from smtpctl.core.records import FrozenInstanceError
from smtpctl.core.rules import SETTINGS, Setting
from smtpctl.core.store.audit import NameSpan
from smtpctl.core.store.schema import MIGRATIONS, Migration

# Each record, the dataclass fields it had (name, default, repr) and two
# different sets of values for it.
MISSING = dataclasses.MISSING
RECORDS = [
    (Agency, [("id", MISSING, True), ("name", MISSING, True), ("created_at", MISSING, True)],
     (1, "Acme", "2026-01-01T00:00:00Z"), (2, "Acme", "2026-01-01T00:00:00Z")),
    (Account, [(name, MISSING, True) for name in ("id", "name", "agency", "daily_limit", "blocked_at", "block_kind",
                                                  "block_reason", "created_at", "updated_at")],
     (1, "shop", "Acme", None, None, None, None, "c", "u"), (1, "shop", "Acme", 10, "b", "manual", "why", "c", "u")),
    (Domain, [(name, MISSING, True) for name in ("id", "name", "unicode_name", "account", "agency", "created_at")],
     (1, "xn--bcher-kva.example", "bücher.example", "shop", "Acme", "c"), (1, "a.example", "a.example", None, "A", "c")),
    (Credential, [*((name, MISSING, True) for name in ("id", "login", "name", "domain", "account", "agency")),
                  ("password_hash", MISSING, False), ("created_at", MISSING, True), ("updated_at", MISSING, True)],
     (1, "u@a.example", "u", "a.example", "shop", "Acme", "$argon2id$secret", "c", "u"),
     (1, "u@a.example", "u", "a.example", "shop", "Acme", "$argon2id$other", "c", "u")),
    (Outcome, [("object", MISSING, True), ("status", MISSING, True), ("extra", MISSING, True)],
     ("thing", "created", {"warnings": []}), ("thing", "created", {})),
    (Setting, [("key", MISSING, True), ("default", MISSING, True), ("parse", MISSING, True),
               ("description", MISSING, True)],
     ("k", 1, int, "a number"), ("k", 2, int, "a number")),
    (NameSpan, [("name", MISSING, True), ("low", None, True), ("high", None, True), ("low_inclusive", True, True)],
     ("shop", 3, None, False), ("shop", 3, None, True)),
    (Migration, [("name", MISSING, True), ("sqlite", MISSING, True), ("postgresql", MISSING, True)],
     ("0001", "CREATE TABLE a (x)", "CREATE TABLE a (x)"), ("0001", "CREATE TABLE a (x)", "CREATE TABLE b (x)")),
]


def twin(cls: type, fields: list) -> type:
    """The frozen dataclass ``cls`` was, built from its old field list."""
    specs = []
    for name, default, shown in fields:
        if default is MISSING:
            specs.append((name, object, dataclasses.field(repr=shown)))
        else:
            specs.append((name, object, dataclasses.field(default=default, repr=shown)))
    return dataclasses.make_dataclass(cls.__name__, specs, frozen=True)


@pytest.mark.parametrize(("cls", "fields", "values", "other"), RECORDS, ids=[r[0].__name__ for r in RECORDS])
def test_record_behaves_as_its_frozen_dataclass(cls, fields, values, other):
    dc = twin(cls, fields)
    assert cls._fields == tuple(name for name, _, _ in fields) == tuple(cls.__annotations__)
    assert cls.__match_args__ == dc.__match_args__
    ours = [(p.name, p.default, p.kind) for p in inspect.signature(cls).parameters.values()]
    theirs = [(p.name, p.default, p.kind) for p in inspect.signature(dc).parameters.values()]
    if cls is Outcome:  # the dataclass had default_factory=dict: None stands for it here
        assert ours[:2] == theirs[:2] and ours[2][0] == "extra" and ours[2][1] is None
        assert cls("o", "s").extra == {} and cls("o", "s").extra is not cls("o", "s").extra
    else:
        assert ours == theirs
    a, b, a2 = cls(*values), cls(*other), cls(*values)
    x, y = dc(*values), dc(*other)
    assert repr(a) == repr(x) and repr(b) == repr(y)
    assert (a == a2, a == b, a != b) == (True, False, True)
    assert a != x and x != a  # another class is never equal, as between two dataclasses
    assert a.__eq__(1) is NotImplemented
    if cls is not Outcome:  # an Outcome holds a dict: unhashable, as the dataclass's was
        assert hash(a) == hash(a2) == hash(x)
    else:
        with pytest.raises(TypeError):
            hash(a)
    kw = dict(zip(cls._fields, values))
    assert cls(**kw) == a
    for name in (cls._fields[0], "not_a_field"):
        with pytest.raises(FrozenInstanceError) as ours_exc:
            setattr(a, name, 0)
        with pytest.raises(dataclasses.FrozenInstanceError) as dc_exc:
            setattr(x, name, 0)
        assert str(ours_exc.value) == str(dc_exc.value)
        assert isinstance(ours_exc.value, AttributeError)
        with pytest.raises(AttributeError, match="cannot delete field"):
            delattr(a, name)
    assert a == a2  # nothing changed


def test_credential_repr_never_shows_the_hash():
    credential = Credential(1, "u@a.example", "u", "a.example", "shop", "Acme", "$argon2id$secret", "c", "u")
    assert "argon2" not in repr(credential) and "password_hash" not in repr(credential)


def test_the_tables_built_from_records_are_intact():
    assert all(isinstance(s, Setting) and key == s.key for key, s in SETTINGS.items())
    assert all(isinstance(m, Migration) and m.script("sqlite") == m.sqlite for m in MIGRATIONS)
