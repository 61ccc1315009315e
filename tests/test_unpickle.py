"""The restricted unpickler against hostile files: pickles crafted byte by byte here, because
torch itself refuses to write the views an attacker writes.

A torch tensor in a pickle is `torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
...)` with the storage from `torch.storage._load_from_bytes(<torch.save bytes>)`; the helpers
below write exactly that, with any storage bytes and any view.
"""

from __future__ import annotations

import io
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cospeech.data.unpickle import load_pickle
from cospeech.errors import CospeechError

SRC = str(Path(__file__).resolve().parents[1] / "src")


# -- crafting ------------------------------------------------------------------------------
class Raw(bytes):
    """Pickle opcodes to splice in as they are."""


def op(x) -> bytes:
    """Opcodes that push `x` (a Raw fragment, a tuple of fragments/values, or a plain value)."""
    if isinstance(x, Raw):
        return x
    if isinstance(x, tuple):
        return b"(" + b"".join(op(v) for v in x) + b"t"
    if isinstance(x, list):
        return b"](" + b"".join(op(v) for v in x) + b"e"
    if isinstance(x, dict):
        return b"}(" + b"".join(op(k) + op(v) for k, v in x.items()) + b"u"
    return pickle.dumps(x, protocol=2)[2:-1]  # without PROTO and STOP


def glob(module: str, name: str) -> Raw:
    return Raw(f"c{module}\n{name}\n".encode())


def call(fn: Raw, *args) -> Raw:
    return Raw(fn + op(tuple(args)) + b"R")


def dumps(x) -> bytes:
    return b"\x80\x02" + op(x) + b"."


def legacy_storage_bytes(values: np.ndarray, storage="FloatStorage", numel=None, count=None, keys=("0",)) -> bytes:
    """What torch.save (legacy format) writes for one storage."""
    values = np.ascontiguousarray(values)
    numel = len(values) if numel is None else numel
    count = len(values) if count is None else count
    pid = Raw(op(("storage", glob("torch", storage), "0", "cpu", numel)) + b"Q")
    return (
        pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2)
        + pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2)
        + dumps(pid) + pickle.dumps(keys if keys is None else list(keys), protocol=2)
        + struct.pack("<q", count) + values.tobytes()
    )


def zip_storage_bytes(values: np.ndarray, storage="FloatStorage", numel=None, drop=(),
                      compression=zipfile.ZIP_STORED) -> bytes:
    """What torch.save (zip format) writes for one storage, less the entries named in `drop`."""
    values = np.ascontiguousarray(values)
    numel = len(values) if numel is None else numel
    pid = Raw(op(("storage", glob("torch", storage), "0", "cpu", numel)) + b"Q")
    files = {"archive/data.pkl": dumps(pid), "archive/data/0": values.tobytes()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as z:
        for name, data in files.items():
            if name not in drop:
                z.writestr(name, data)
    return buf.getvalue()


def tensor(storage_bytes: bytes, offset=0, size=(6,), stride=(1,)) -> Raw:
    storage = call(glob("torch.storage", "_load_from_bytes"), storage_bytes)
    return call(glob("torch._utils", "_rebuild_tensor_v2"), storage, offset, size, stride, False,
                call(glob("collections", "OrderedDict")))


SIX = np.arange(6, dtype=np.float32)


def hostile_tensor_pickle(offset=0, size=(6,), stride=(1,), values=SIX, zip_format=False) -> bytes:
    storage = zip_storage_bytes(values) if zip_format else legacy_storage_bytes(values)
    return dumps({"x": tensor(storage, offset, size, stride)})


def load_bytes(tmp_path, data: bytes):
    path = tmp_path / "clip.pkl"
    path.write_bytes(data)
    return load_pickle(path)


# -- what must still work --------------------------------------------------------------------
@pytest.mark.parametrize("zip_format", [False, True], ids=["legacy", "zip"])
def test_crafted_views_decode_to_the_right_values(tmp_path, zip_format):
    # offset 1, a (2, 3) view with strides (1, 2): element [i, j] is storage[1 + i + 2 j]
    out = load_bytes(tmp_path, hostile_tensor_pickle(1, (2, 3), (1, 2), np.arange(10.0, 17.0, dtype=np.float32),
                                                     zip_format))
    i, j = np.arange(2)[:, None], np.arange(3)[None, :]
    np.testing.assert_array_equal(out["x"], np.arange(10.0, 17.0)[1 + i + 2 * j])
    assert out["x"].tolist() == [[11, 13, 15], [12, 14, 16]] and out["x"].dtype == np.float32
    # the last element of the storage is reachable; a 0-d tensor; an empty tensor; stride 0 (expand)
    assert load_bytes(tmp_path, hostile_tensor_pickle(5, (1,), (1,), zip_format=zip_format))["x"].tolist() == [5.0]
    assert load_bytes(tmp_path, hostile_tensor_pickle(4, (), (), zip_format=zip_format))["x"].item() == 4.0
    assert load_bytes(tmp_path, hostile_tensor_pickle(6, (0, 3), (3, 1), zip_format=zip_format))["x"].shape == (0, 3)
    np.testing.assert_array_equal(load_bytes(tmp_path, hostile_tensor_pickle(2, (3, 2), (0, 1), zip_format=zip_format))["x"],
                                  [[2, 3]] * 3)


def test_torch_written_tensors_match_torch(tmp_path):
    torch = pytest.importorskip("torch")
    t = torch.arange(24, dtype=torch.float64).reshape(2, 3, 4)
    obj = {"view": t.permute(2, 0, 1)[1:, :, 1:], "half": torch.ones(3, dtype=torch.float16),
           "long": torch.tensor([-(2**40), 7]), "bool": torch.tensor([True, False]), "scalar": torch.tensor(3.5),
           "empty": torch.zeros(0, 5)}
    out = load_bytes(tmp_path, pickle.dumps(obj))
    for k, v in obj.items():
        np.testing.assert_array_equal(out[k], v.numpy(), err_msg=k)
        assert out[k].dtype == v.numpy().dtype and out[k].shape == tuple(v.shape)


# -- out-of-bounds and malformed views ---------------------------------------------------------
OUT_OF_BOUNDS = {
    "size past the end": dict(size=(7,)),
    "size far past the end": dict(size=(1_000_000,)),
    "stride past the end": dict(size=(2,), stride=(6,)),
    "huge stride": dict(size=(2,), stride=(2**40,)),
    "offset at the end": dict(offset=6, size=(1,)),
    "offset plus size": dict(offset=3, size=(4,)),
    "huge offset": dict(offset=2**62),
    "offset past int64": dict(offset=2**70),
    "0-d offset past the end": dict(offset=6, size=(), stride=()),
    "2-d corner past the end": dict(size=(2, 3), stride=(3, 2)),
    "negative offset": dict(offset=-1, size=(1,)),
    "negative size": dict(size=(-1,)),
    "negative stride": dict(offset=5, size=(6,), stride=(-1,)),
    "size past int64": dict(size=(2**64 + 1,), stride=(0,)),
    "expanded to 2**40 elements": dict(size=(2**20, 2**20), stride=(0, 0)),
    "size is a float": dict(size=(2.5,)),
    "size is a string": dict(size="abc", stride="abc"),
    "size and stride differ in length": dict(size=(2, 3), stride=(1,)),
    "offset is a list": dict(offset=[0]),
}


@pytest.mark.parametrize("zip_format", [False, True], ids=["legacy", "zip"])
@pytest.mark.parametrize("case", sorted(OUT_OF_BOUNDS))
def test_out_of_bounds_views_are_refused(tmp_path, case, zip_format):
    with pytest.raises(CospeechError, match="cannot read this pickle safely"):
        load_bytes(tmp_path, hostile_tensor_pickle(**OUT_OF_BOUNDS[case], zip_format=zip_format))


def test_the_crafted_segfault_is_a_one_line_error_in_a_fresh_process(tmp_path):
    """A view far outside its storage made the process die with SIGSEGV: run it where that shows."""
    path = tmp_path / "clip.pkl"
    path.write_bytes(hostile_tensor_pickle(size=(1 << 30,), stride=(1 << 20,)))
    proc = subprocess.run(
        [sys.executable, "-c", f"from cospeech.data.unpickle import load_pickle; load_pickle({str(path)!r})"],
        capture_output=True, text=True, timeout=120, env={"PYTHONPATH": SRC},
    )
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-500:])
    assert proc.stderr.strip().splitlines()[-1].startswith("cospeech.errors.CospeechError")
    assert "reaches element" in proc.stderr


STORAGES = {
    "unknown storage type": lambda: legacy_storage_bytes(SIX, storage="ComplexFloatStorage"),
    "storage type not torch": lambda: dumps(Raw(op(("storage", "FloatStorage", "0", "cpu", 6)) + b"Q")),
    "legacy: count differs from declared": lambda: legacy_storage_bytes(SIX, numel=100),
    "legacy: data shorter than its count": lambda: legacy_storage_bytes(SIX, numel=100, count=100),
    "legacy: negative count": lambda: legacy_storage_bytes(SIX, numel=-1, count=-1),
    "legacy: key list names another storage": lambda: legacy_storage_bytes(SIX, keys=("1",)),
    "legacy: key list is not a list": lambda: legacy_storage_bytes(SIX, keys=None),
    "legacy: cut short": lambda: legacy_storage_bytes(SIX)[:-5],
    "legacy: nothing after the magic": lambda: pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2),
    "zip: declared more than stored": lambda: zip_storage_bytes(SIX, numel=100),
    "zip: data entry missing": lambda: zip_storage_bytes(SIX, drop=("archive/data/0",)),
    "zip: data.pkl missing": lambda: zip_storage_bytes(SIX, drop=("archive/data.pkl",)),
    "zip: bad CRC": lambda: zip_storage_bytes(SIX).replace(SIX.tobytes(), SIX[::-1].tobytes()),
    "zip: garbage after PK": lambda: b"PK\x03\x04" + bytes(range(200)),
    "zip: compressed entry": lambda: zip_storage_bytes(np.zeros(100_000, np.float32), compression=zipfile.ZIP_DEFLATED),
    "zip: empty archive": lambda: _empty_zip(),
    "bytes are not bytes": lambda: [1, 2, 3],
}


def _empty_zip() -> bytes:
    buf = io.BytesIO()
    zipfile.ZipFile(buf, "w").close()
    return buf.getvalue()


@pytest.mark.parametrize("case", sorted(STORAGES))
def test_malformed_storages_are_refused(tmp_path, case):
    data = STORAGES[case]()
    view = tensor(data) if isinstance(data, bytes) else call(glob("torch.storage", "_load_from_bytes"), data)
    with pytest.raises(CospeechError, match=r"clip\.pkl: cannot read this pickle safely"):
        load_bytes(tmp_path, dumps({"x": view}))


def test_wrong_storage_type_name_is_refused_by_name(tmp_path):
    with pytest.raises(CospeechError, match="refusing to load torch.ComplexFloatStorage"):
        load_bytes(tmp_path, dumps({"x": tensor(legacy_storage_bytes(SIX, storage="ComplexFloatStorage"))}))


def test_tensor_whose_storage_is_not_a_storage(tmp_path):
    # a plain list (or an array made by the pickle) must not stand in for a decoded storage
    bad = call(glob("torch._utils", "_rebuild_tensor_v2"), [1.0, 2.0], 0, (2,), (1,), False,
               call(glob("collections", "OrderedDict")))
    with pytest.raises(CospeechError, match="storage is a list"):
        load_bytes(tmp_path, dumps(bad))


# -- code execution ----------------------------------------------------------------------------
def code_execution_attempts(marker: Path) -> dict[str, bytes]:
    cmd = f"touch {marker}"

    class Reduce:
        def __init__(self, fn, *args):
            self.fn, self.args = fn, args

        def __reduce__(self):
            return self.fn, self.args

    import os

    return {
        "__reduce__ os.system": pickle.dumps({"a": Reduce(os.system, cmd)}),
        "__reduce__ eval": pickle.dumps(Reduce(eval, f"__import__('os').system({cmd!r})")),
        "__reduce__ exec": pickle.dumps(Reduce(exec, f"import os; os.system({cmd!r})")),
        "__reduce__ subprocess": pickle.dumps(Reduce(subprocess.call, ["touch", str(marker)])),
        "INST opcode, protocol 0": f"(S'{cmd}'\nios\nsystem\n.".encode(),
        "INST posix.system": f"(S'{cmd}'\niposix\nsystem\n.".encode(),
        "GLOBAL builtins.getattr": dumps(call(glob("builtins", "getattr"), Raw(glob("os", "path")), "join")),
        "OBJ opcode": b"(" + glob("os", "system") + op(cmd) + b"o.",
        "STACK_GLOBAL protocol 4": pickle.dumps(Reduce(os.system, cmd), protocol=4),
        "numpy.ndarray called directly": dumps(call(glob("numpy", "ndarray"), (1 << 30,), "f8", b"", 0, (1 << 40,))),
        "_reconstruct of another class": dumps(
            call(glob("numpy.core.multiarray", "_reconstruct"), Raw(glob("os", "system")), (0,), b"b")),
        "_reconstruct of a huge shape": dumps(
            call(glob("numpy._core.multiarray", "_reconstruct"), Raw(glob("numpy", "ndarray")), (1 << 40,), b"b")),
        "_codecs.encode with another codec": dumps(call(glob("_codecs", "encode"), "x", "rot13")),
        "torch.load": dumps(call(glob("torch", "load"), "/etc/passwd")),
        "numpy.load": dumps(call(glob("numpy", "load"), str(marker), True)),
        "copyreg extension code": b"\x80\x02\x82\x01.",
    }


@pytest.mark.parametrize("case", sorted(code_execution_attempts(Path("m"))))
def test_code_execution_attempts_are_refused(tmp_path, case):
    marker = tmp_path / "pwned"
    with pytest.raises(CospeechError, match=r"cannot read this pickle safely"):
        load_bytes(tmp_path, code_execution_attempts(marker)[case])
    assert not marker.exists()


def test_build_opcode_cannot_change_the_decoder_for_later_files(tmp_path):
    """BUILD sets attributes on the object below it; on a resolved global that could patch the
    decoder itself (a function's defaults) for every later load in the process."""
    fn = Raw(glob("_codecs", "encode") + op((None, {"__defaults__": ("rot13",)})) + b"b")
    try:
        load_bytes(tmp_path, dumps([fn]))
    except CospeechError:
        pass
    ok = dumps(call(glob("_codecs", "encode"), "abc"))  # the default encoding
    assert load_bytes(tmp_path, ok) == b"abc"
    np.testing.assert_array_equal(load_bytes(tmp_path, hostile_tensor_pickle())["x"], SIX)


def test_shared_references_are_not_multiplied(tmp_path):
    """A list that holds the previous one twice, 80 deep, is 2**80 leaves if copied naively:
    the load must finish (in a fresh process, with a timeout, so a regression cannot hang the suite)."""
    body = b"\x80\x02" + op([1.0, 2.0]) + b"q\x00"
    for _ in range(80):
        body += b"(h\x00h\x00lq\x00"
    body += b"h\x00."
    legacy = call(glob("torch.storage", "_load_from_bytes"), legacy_storage_bytes(SIX))
    path = tmp_path / "laughs.pkl"
    path.write_bytes(b"\x80\x02(" + op(legacy) + body[2:-1] + b"l.")
    code = (f"from cospeech.data.unpickle import load_pickle; d = load_pickle({str(path)!r}); "
            "x = d[-1]\nfor _ in range(80): x = x[0]\nprint(x)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": SRC})
    assert proc.returncode == 0, proc.stderr[-500:]
    assert proc.stdout.strip() == "[1.0, 2.0]"


def test_not_a_pickle_and_missing_files(tmp_path):
    for data in (b"", b"hello world", b"\x80\x05\x95", bytes(range(256))):
        with pytest.raises(CospeechError, match="cannot read this pickle safely"):
            load_bytes(tmp_path, data)
    with pytest.raises(CospeechError, match="no such file"):
        load_pickle(tmp_path / "nope.pkl")
    with pytest.raises(CospeechError, match="is a folder"):
        load_pickle(tmp_path)


@pytest.mark.parametrize("case", ["memo index 2**31", "memo index 10**9, protocol 0", "frame of 4 GiB", "bytearray8"])
def test_allocation_bombs_are_refused_before_unpickling(tmp_path, case):
    """A few bytes that ask the C unpickler for gigabytes (it allocates before it checks)."""
    data = {
        "memo index 2**31": b"\x80\x02K\x01r" + struct.pack("<I", 2**31) + b".",
        "memo index 10**9, protocol 0": b"I1\np1000000000\n.",
        "frame of 4 GiB": b"\x80\x04\x95" + struct.pack("<Q", 1 << 32) + b"K\x01.",
        "bytearray8": b"\x80\x05\x96" + struct.pack("<Q", 3) + b"abc.",
    }[case]
    with pytest.raises(CospeechError, match="out of range|frame of|refusing opcode"):
        load_bytes(tmp_path, data)
