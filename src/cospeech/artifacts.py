"""What every saved artifact (model, evaluator, training checkpoint, feature cache) shares:
file hashes, the strict reading of frozen config dataclasses, and safetensors + JSON files.

A saved artifact is a folder of a safetensors file (tensors) and a JSON file (everything else);
both are written atomically, and reading either one that is missing or damaged is a one-line
`CospeechError` naming the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

from .atomic import atomic_path, write_text
from .errors import CospeechError

C = TypeVar("C")


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read a MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def config_from_dict(cls: type[C], d: Any, what: str | None = None) -> C:
    """Build the frozen dataclass `cls` from its `asdict` form, strictly.

    An unknown key (a typo, or a setting from a newer cospeech) and a missing required key are
    errors that name the key; lists become tuples where the field is a tuple. Validation of the
    values themselves stays in the class's `__post_init__`.
    """
    what = what or cls.__name__
    if not isinstance(d, dict):
        raise CospeechError(f"{what}: expected a mapping of settings, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise CospeechError(f"{what}: unknown setting(s) {', '.join(map(repr, unknown))} "
                            f"(written by a newer cospeech, or a typo); known: {', '.join(fields)}")
    missing = sorted(n for n, f in fields.items() if n not in d and f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING)
    if missing:
        raise CospeechError(f"{what}: missing setting(s) {', '.join(map(repr, missing))}")
    values = {k: tuple(v) if isinstance(v, list) and str(fields[k].type).startswith("tuple") else v
              for k, v in d.items()}
    try:
        return cls(**values)
    except TypeError as err:
        raise CospeechError(f"{what}: {err}") from None


def read_json(path: str | Path, what: str = "file") -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CospeechError(f"{path}: cannot read {what} ({err})") from None


def write_json(path: str | Path, obj: Any) -> Path:
    write_text(path, json.dumps(obj, indent=1))
    return Path(path)


def save_tensors(tensors: dict, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write a dict of tensors as safetensors, atomically (each tensor made contiguous)."""
    from safetensors.torch import save_file

    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    return Path(path)


def load_tensors(path: str | Path) -> dict:
    """Read a safetensors file on the CPU; a missing or damaged file is a one-line error."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (OSError, SafetensorError) as err:
        raise CospeechError(f"{path}: cannot read weights ({err})") from None
