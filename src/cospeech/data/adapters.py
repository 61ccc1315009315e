"""Dataset layout name -> adapter module (`NAME`, `takes(root) -> list[Take]`, `load_motion(take)`,
and optionally `spec() -> MotionSpec`, the motion spec of a new cache of that layout; without it
the SMPL-X + FLAME spec).

A new layout is one module beside this one and one entry here. This module imports only the
adapters, so the cache (and anything else) can use the registry without an import cycle.
"""

from __future__ import annotations

from types import ModuleType

from . import beat, beat2, biwi, folder, genea, show, trinity, vocaset, zeggs

ADAPTERS: dict[str, ModuleType] = {m.NAME: m for m in (beat2, show, folder, beat, zeggs, genea, trinity, vocaset, biwi)}
