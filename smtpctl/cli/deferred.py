"""Deferred imports for the command modules.

Every command group is registered when ``smtpctl`` starts, but one run uses
one command. Importing every ``smtpctl.core`` module for it cost ~30 ms of
class creation (benchmarks/startup.py); a deferred module is loaded on its
first attribute access instead.
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
