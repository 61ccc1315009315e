"""A restricted unpickler for dataset files (SHOW/TalkSHOW .pkl).

Datasets ship pickles, and a pickle can run any code. This loader resolves only the globals
that plain containers, numpy arrays and torch tensors need; torch tensors are decoded by hand
into numpy arrays, so torch is never imported and no foreign code runs. Anything else is refused
with a `CospeechError`.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

from ..errors import CospeechError

_TORCH_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name: str):
        self.dtype = np.dtype(_TORCH_STORAGE_DTYPES[name])


def _numpy_globals() -> dict[tuple[str, str], object]:
    allowed = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1.x and 2.x names
        allowed[(mod, "_reconstruct")] = multiarray._reconstruct
        allowed[(mod, "scalar")] = multiarray.scalar
    return allowed


def _codecs_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Python-2-compatible pickles store bytes as ('latin1'-decoded text, 'latin1').
    if encoding not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode(encoding)


def _build_array(flat: np.ndarray, offset: int, size, stride) -> np.ndarray:
    if len(size) == 0:
        return np.array(flat[offset])
    itemsize = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)
    )
    return np.array(view)


class _Lazy:
    """A legacy-format storage whose bytes come after the pickle that refers to it."""

    def __init__(self, key):
        self.key = key


class _LazyTensor:
    def __init__(self, storage: _Lazy, offset, size, stride):
        self.storage, self.view = storage, (offset, size, stride)


def _rebuild_tensor(storage, offset, size, stride, *_):
    if isinstance(storage, _Lazy):
        return _LazyTensor(storage, offset, size, stride)
    return _build_array(np.asarray(storage), offset, size, stride)


class _Unpickler(pickle.Unpickler):
    """Resolves only whitelisted globals; torch storages come from `storages`."""

    def __init__(self, file, storages=None):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module, name):
        key = (module, name)
        if key in _ALLOWED:
            return _ALLOWED[key]
        if key == ("_codecs", "encode"):
            return _codecs_encode
        if key == ("torch._utils", "_rebuild_tensor_v2") or key == ("torch._utils", "_rebuild_tensor"):
            return _rebuild_tensor
        if key == ("torch.storage", "_load_from_bytes"):
            return _load_torch_bytes
        if module == "torch" and name in _TORCH_STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid):
        if self._storages is None:
            raise pickle.UnpicklingError("unexpected persistent id")
        return self._storages(pid)


def _load_torch_bytes(data: bytes):
    """Decode what torch.save wrote (legacy or zip format) without importing torch."""
    if data[:2] == b"PK":
        return _load_torch_zip(data)
    f = io.BytesIO(data)
    for _ in range(3):  # magic number, protocol version, system info
        _Unpickler(f).load()
    pending: dict[str, tuple[np.dtype, int]] = {}

    def storage(pid):
        _, stype, key, _location, numel = pid[:5]
        pending[key] = (stype.dtype, numel)
        return _Lazy(key)

    result = _Unpickler(f, storages=storage).load()
    keys = _Unpickler(f).load()
    arrays = {}
    for key in keys:
        (count,) = struct.unpack("<q", f.read(8))
        dtype = pending[key][0]
        arrays[key] = np.frombuffer(f.read(count * dtype.itemsize), dtype=dtype).copy()
    return _resolve(result, arrays)


def _load_torch_zip(data: bytes):
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = z.namelist()
        prefix = names[0].split("/")[0]

        def storage(pid):
            _, stype, key, _location, _numel = pid[:5]
            return np.frombuffer(z.read(f"{prefix}/data/{key}"), dtype=stype.dtype).copy()

        return _Unpickler(io.BytesIO(z.read(f"{prefix}/data.pkl")), storages=storage).load()


def _resolve(obj, arrays):
    if isinstance(obj, _Lazy):
        return arrays[obj.key]
    if isinstance(obj, _LazyTensor):
        return _build_array(arrays[obj.storage.key], *obj.view)
    if isinstance(obj, dict):
        return type(obj)((k, _resolve(v, arrays)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(v, arrays) for v in obj)
    return obj


_ALLOWED = _numpy_globals()


def load_pickle(path: str | Path):
    """Load a dataset pickle with the restricted unpickler; torch tensors become numpy arrays."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _Unpickler(f).load()
    except FileNotFoundError:
        raise CospeechError(f"{path}: no such file") from None
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError, struct.error) as err:
        raise CospeechError(f"{path}: cannot read this pickle safely ({err})") from None
