"""Deferred imports for the command modules.

A command module binds the ``smtpctl.core`` modules it calls at import time;
a deferred module is executed only on its first attribute access, so a
module that only some of a group's commands need (``credits`` for
``agency show``, ``adopt`` for ``user import``) is loaded by those alone.
(The root builds only the group that runs: see ``smtpctl.cli.COMMANDS``.)
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def deferred_import(name: str) -> ModuleType:
    """``name``'s module, executed only when one of its attributes is first used."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
