"""A restricted unpickler for dataset files (SHOW/TalkSHOW .pkl).

Datasets ship pickles, and a pickle can run any code. This loader resolves only the globals
that plain containers, numpy arrays and torch tensors need; torch tensors are decoded by hand
into numpy arrays, so torch is never imported and no foreign code runs. Anything else is refused
with a `CospeechError`.

The file is hostile until proven otherwise: every tensor view (size, stride, offset) is checked
against the byte length of its storage before any array is built, storages must match the
element count they declare, and only the numpy constructors that pickles of plain arrays use
are reachable, each through a guard.
"""

from __future__ import annotations

import collections
import functools
import io
import pickle
import pickletools
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
# A view may repeat storage elements (stride 0, as `expand` makes); it may not be larger than
# its storage by more than this many elements, so a few bytes cannot claim gigabytes.
MAX_EXPANDED_ELEMENTS = 1 << 20


class _StorageType:
    """What `torch.FloatStorage` etc. resolve to: only the name, looked up again when used."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


class _Storage:
    """A decoded storage: a flat array. Only these may back a tensor."""

    __slots__ = ("flat",)

    def __init__(self, flat: np.ndarray):
        self.flat = flat


class _NdarrayClass:
    """Stands for `numpy.ndarray` in a pickle: usable as `_reconstruct`'s first argument only,
    so a pickle cannot call the ndarray constructor with a shape, buffer and strides of its own."""

    __slots__ = ()


def _reconstruct(subtype, shape, dtype):
    # numpy pickles an array as _reconstruct(ndarray, (0,), b'b') followed by __setstate__,
    # which checks the data length against the shape and dtype it is given
    if not isinstance(subtype, _NdarrayClass) or tuple(shape) != (0,):
        raise pickle.UnpicklingError("numpy _reconstruct called with unexpected arguments")
    return np.ndarray.__new__(np.ndarray, (0,), dtype)


def _numpy_globals() -> dict[tuple[str, str], object]:
    allowed = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("numpy", "dtype"): np.dtype,
    }
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1.x and 2.x names
        allowed[(mod, "_reconstruct")] = _reconstruct
        allowed[(mod, "scalar")] = multiarray.scalar
    return allowed


def _codecs_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Python-2-compatible pickles store bytes as ('latin1'-decoded text, 'latin1').
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode(encoding)


def _int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise pickle.UnpicklingError(f"tensor {what} is {type(value).__name__}, not an integer")
    return int(value)


def _build_array(flat: np.ndarray, offset, size, stride) -> np.ndarray:
    """Copy the view (offset, size, stride, in elements) of a flat storage into a new array.

    Every value is checked against the storage's length first: no view reaches outside it.
    """
    if not isinstance(size, (tuple, list)) or not isinstance(stride, (tuple, list)):
        raise pickle.UnpicklingError("tensor size and stride must be tuples")
    if len(size) != len(stride):
        raise pickle.UnpicklingError(f"tensor size {tuple(size)} and stride {tuple(stride)} differ in length")
    if len(size) > 64:
        raise pickle.UnpicklingError(f"tensor has {len(size)} dimensions")
    offset = _int(offset, "offset")
    size = tuple(_int(n, "size") for n in size)
    stride = tuple(_int(s, "stride") for s in stride)
    if offset < 0 or any(n < 0 for n in size) or any(s < 0 for s in stride):
        raise pickle.UnpicklingError(f"negative tensor offset {offset}, size {size} or stride {stride}")
    numel = flat.size
    count = 1
    for n in size:
        count *= n
    if count == 0:
        if offset > numel:
            raise pickle.UnpicklingError(f"tensor offset {offset} is past its storage of {numel} elements")
        return np.zeros(size, dtype=flat.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))  # the highest element read
    if last >= numel:
        raise pickle.UnpicklingError(
            f"tensor view (offset {offset}, size {size}, stride {stride}) reaches element {last} "
            f"of a storage of {numel}"
        )
    if count > max(numel, MAX_EXPANDED_ELEMENTS):
        raise pickle.UnpicklingError(f"tensor of {count} elements from a storage of {numel}")
    itemsize = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=size, strides=tuple(s * itemsize for s in stride), writeable=False
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
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError(f"a tensor's storage is a {type(storage).__name__}")
    return _build_array(storage.flat, offset, size, stride)


def _storage_dtype(stype) -> np.dtype:
    name = stype.name if isinstance(stype, _StorageType) else None
    if name not in _TORCH_STORAGE_DTYPES:
        raise pickle.UnpicklingError(f"unknown storage type {stype!r}")
    return np.dtype(_TORCH_STORAGE_DTYPES[name])


def _storage_pid(pid) -> tuple[np.dtype, str, int]:
    """('storage', storage type, key, location, numel) -> (dtype, key, numel), checked."""
    if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
        raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
    _, stype, key, _location, numel = pid[:5]
    if not isinstance(key, str):
        raise pickle.UnpicklingError(f"storage key {key!r:.40} is not a string")
    numel = _int(numel, "storage length")
    if numel < 0:
        raise pickle.UnpicklingError(f"storage length {numel} is negative")
    return _storage_dtype(stype), key, numel


_MEMO_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
_REFUSED_OPS = {"BYTEARRAY8", "NEXT_BUFFER", "READONLY_BUFFER"}  # out-of-band buffers: no dataset needs them


def _check_opcodes(f: io.BytesIO) -> None:
    """Walk one pickle's opcodes without running them, from f's position.

    The C unpickler allocates before it checks: a memo index of 10**9 (LONG_BINPUT) or a frame
    of 4 GiB asks for gigabytes from a few bytes of input. Indices and lengths are bounded by
    the input's size here; truncated or unknown opcodes fail here too.
    """
    start, size = f.tell(), len(f.getbuffer())
    for opcode, arg, _pos in pickletools.genops(f):
        if opcode.name in _REFUSED_OPS:
            raise pickle.UnpicklingError(f"refusing opcode {opcode.name}")
        if opcode.name in _MEMO_OPS and not 0 <= int(arg) <= size:
            raise pickle.UnpicklingError(f"memo index {arg} is out of range")
        if opcode.name == "FRAME" and arg > size:
            raise pickle.UnpicklingError(f"frame of {arg} bytes in {size} bytes of input")
    f.seek(start)


def _load(f: io.BytesIO, storages=None, encoding: str = "ASCII"):
    _check_opcodes(f)
    return _Unpickler(f, storages, encoding).load()


class _Unpickler(pickle.Unpickler):
    """Resolves only whitelisted globals; torch storages come from `storages`."""

    def __init__(self, file, storages=None, encoding: str = "ASCII"):
        super().__init__(file, encoding=encoding)
        self._storages = storages

    def find_class(self, module, name):
        # functions are handed out fresh (a partial), so a BUILD opcode that sets attributes on
        # them cannot change this module's functions for later loads
        key = (module, name)
        if key == ("numpy", "ndarray"):
            return _NdarrayClass()
        if key in _ALLOWED:
            obj = _ALLOWED[key]
            return functools.partial(obj) if obj is _reconstruct else obj
        if key == ("_codecs", "encode"):
            return functools.partial(_codecs_encode)
        if key == ("torch._utils", "_rebuild_tensor_v2") or key == ("torch._utils", "_rebuild_tensor"):
            return functools.partial(_rebuild_tensor)
        if key == ("torch.storage", "_load_from_bytes"):
            return functools.partial(_load_torch_bytes)
        if module == "torch" and name in _TORCH_STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid):
        if self._storages is None:
            raise pickle.UnpicklingError("unexpected persistent id")
        return self._storages(pid)


def _load_torch_bytes(data: bytes):
    """Decode what torch.save wrote (legacy or zip format) without importing torch."""
    if not isinstance(data, bytes):
        raise pickle.UnpicklingError(f"torch storage bytes are a {type(data).__name__}")
    if data[:2] == b"PK":
        return _load_torch_zip(data)
    f = io.BytesIO(data)
    for _ in range(3):  # magic number, protocol version, system info
        _load(f)
    pending: dict[str, tuple[np.dtype, int]] = {}

    def storage(pid):
        dtype, key, numel = _storage_pid(pid)
        pending[key] = (dtype, numel)
        return _Lazy(key)

    result = _load(f, storage)
    keys = _load(f)
    if not isinstance(keys, list):
        raise pickle.UnpicklingError("legacy torch data: the storage key list is missing")
    arrays = {}
    for key in keys:
        if key not in pending:
            raise pickle.UnpicklingError(f"legacy torch data: storage {key!r:.40} is not referenced")
        dtype, numel = pending[key]
        (count,) = struct.unpack("<q", f.read(8))
        if count != numel:
            raise pickle.UnpicklingError(f"storage {key!r:.40} declares {numel} elements but holds {count}")
        raw = f.read(count * dtype.itemsize)
        if len(raw) != count * dtype.itemsize:
            raise pickle.UnpicklingError(f"storage {key!r:.40} is truncated")
        arrays[key] = np.frombuffer(raw, dtype=dtype).copy()
    return _resolve(result, arrays, {})


def _load_torch_zip(data: bytes):
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        infos = z.infolist()
        if not infos:
            raise pickle.UnpicklingError("empty torch archive")
        for info in infos:
            # torch writes its archives uncompressed; anything else could be a decompression bomb
            if info.compress_type != zipfile.ZIP_STORED:
                raise pickle.UnpicklingError(f"compressed entry {info.filename!r} in a torch archive")
        prefix = infos[0].filename.split("/")[0]

        def storage(pid):
            dtype, key, numel = _storage_pid(pid)
            raw = z.read(f"{prefix}/data/{key}")
            if len(raw) != numel * dtype.itemsize:
                raise pickle.UnpicklingError(
                    f"storage {key!r:.40} declares {numel} elements of {dtype} but holds {len(raw)} bytes"
                )
            return _Storage(np.frombuffer(raw, dtype=dtype).copy())

        return _load(io.BytesIO(z.read(f"{prefix}/data.pkl")), storage)


def _resolve(obj, arrays, done: dict):
    """Replace legacy lazy storages and tensors by arrays; shared sub-objects are resolved once
    (a pickle can reference one list from many places, which must not multiply the work)."""
    if id(obj) in done:
        return done[id(obj)]
    if isinstance(obj, _Lazy):
        out = _Storage(arrays[obj.key])
    elif isinstance(obj, _LazyTensor):
        out = _build_array(arrays[obj.storage.key], *obj.view)
    elif isinstance(obj, dict):
        out = type(obj)((k, _resolve(v, arrays, done)) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        out = type(obj)(_resolve(v, arrays, done) for v in obj)
    else:
        out = obj
    done[id(obj)] = out
    return out


_ALLOWED = _numpy_globals()


def load_pickle(path: str | Path, encoding: str = "ASCII"):
    """Load a dataset pickle with the restricted unpickler; torch tensors become numpy arrays.
    encoding: how Python 2 strings decode; "latin1" reads Python 2 pickles of numpy arrays (as
    FaceFormer's templates.pkl), whose array bytes are stored as such strings."""
    if encoding not in ("ASCII", "latin1"):
        raise CospeechError(f"pickle encoding must be ASCII or latin1, got {encoding!r}")
    path = Path(path)
    try:
        return _plain(_load(io.BytesIO(path.read_bytes()), encoding=encoding), {})
    except FileNotFoundError:
        raise CospeechError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CospeechError(f"{path}: is a folder, not a pickle") from None
    except PermissionError:
        raise CospeechError(f"{path}: permission denied") from None
    except Exception as err:  # noqa: BLE001 - a hostile file may fail anywhere; never a traceback
        raise CospeechError(f"{path}: cannot read this pickle safely ({_one_line(err)})") from None


def _plain(obj, done: dict):
    """What a caller may receive: storages as flat arrays, no decoder objects left over."""
    if id(obj) in done:
        return done[id(obj)]
    if isinstance(obj, _Storage):
        out = obj.flat
    elif isinstance(obj, (_StorageType, _NdarrayClass, _Lazy, _LazyTensor, functools.partial)):
        raise pickle.UnpicklingError(f"a bare {type(obj).__name__} in the data")
    elif isinstance(obj, dict):
        out = type(obj)((k, _plain(v, done)) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        out = type(obj)(_plain(v, done) for v in obj)
    else:
        out = obj
    done[id(obj)] = out
    return out


def _one_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__
