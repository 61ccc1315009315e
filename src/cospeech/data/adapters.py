"""Dataset layout name -> adapter module (`NAME`, `takes(root) -> list[Take]`, `load_motion(take)`).

A new layout is one module beside this one and one entry here. This module imports only the
adapters, so the cache (and anything else) can use the registry without an import cycle.
"""

from __future__ import annotations

from types import ModuleType

from . import beat2, folder, show

ADAPTERS: dict[str, ModuleType] = {m.NAME: m for m in (beat2, show, folder)}
