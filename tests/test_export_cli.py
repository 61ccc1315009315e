"""`cospeech export MOTION --to FORMAT [-o OUT]` on real files: each input kind, each new format,
and a one-line error for every way it can go wrong."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cospeech.cli.main import build_parser, main
from cospeech.export import EXPORTERS
from cospeech.motion import ARKIT_52

from .conftest import BEAT2, BEAT2_TAKE, DATA, need_data

TAKE = DATA / "arkit_livelink" / "livelink_take.csv"
NPZ = BEAT2 / "smplxflame_30" / f"{BEAT2_TAKE}.npz"
BEAT_BVH = DATA / "beat_bvh" / "2_scott_0_1_1.bvh"


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("cospeech: error: "), err
    return err


def test_live_link_take_to_arkit_json(tmp_path, capsys):
    need_data(TAKE)
    assert main(["export", str(TAKE), "--to", "arkit-json", "-o", str(tmp_path)]) == 0
    out = tmp_path / "livelink_take_arkit.json"
    assert str(out) in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert len(doc["frames"]) == 1218 and doc["metadata"]["missing"] == []


def test_smplx_npz_to_livelink_csv_names_what_is_missing(tmp_path, capsys):
    need_data(NPZ)
    out = tmp_path / "face.csv"
    assert main(["export", str(NPZ), "--to", "livelink-csv", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("cospeech: note: jawOpen derived from the jaw") and "51 curves" in err and "eyeBlinkLeft" in err
    lines = out.read_text().splitlines()
    assert len(lines) == 1907 and lines[1].startswith("00:00:00:00.000,61,")
    assert lines[-1].startswith(f"00:01:03:{1905 * 2 % 60:02d}.000,")  # frame 1905 at 30 fps = 63.5 s


def test_npz_to_bvh_to_glb(tmp_path, capsys):
    """Two hops: the project's BVH is itself an input, and the glb made from it moves like the
    glb made from the npz."""
    need_data(NPZ)
    pygltflib = pytest.importorskip("pygltflib")
    assert main(["export", str(NPZ), "--to", "bvh", "-o", str(tmp_path / "take.bvh")]) == 0
    assert main(["export", str(tmp_path / "take.bvh"), "--to", "glb"]) == 0
    assert main(["export", str(NPZ), "--to", "glb", "-o", str(tmp_path / "direct.glb")]) == 0
    a, b = (pygltflib.GLTF2().load(str(tmp_path / n)) for n in ("take.glb", "direct.glb"))
    for doc in (a, b):
        assert len(doc.nodes) == 55 and len(doc.animations[0].channels) == 56
        assert doc.accessors[0].count == 1906
    qa = np.frombuffer(a.binary_blob(), "<f4")
    qb = np.frombuffer(b.binary_blob(), "<f4")
    assert qa.shape == qb.shape and np.abs(qa - qb).max() < 1e-4  # 6 decimals of degrees in the BVH


def test_one_line_errors(tmp_path, capsys):
    need_data(TAKE)
    cases = [
        (["export", str(tmp_path / "none.npz"), "--to", "glb"], "none.npz: no such motion file"),
        (["export", str(TAKE), "--to", "gif"], "unknown format(s) gif; choose from npz, bvh, mp4, glb"),
        (["export", str(TAKE), "--to", "glb,bvh"], "one format at a time"),
        (["export", str(TAKE), "--to", "bvh"], "livelink_take.csv: this motion has no body ('body'); bvh export needs one"),
        (["export", str(TAKE), "--to", "npz"], "npz export writes SMPL-X + FLAME parameters; this motion is not SMPL-X"),
        (["export", str(DATA / "speech" / "arctic_a0007.wav"), "--to", "glb"], "arctic_a0007.wav: cannot read .wav"),
    ]
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    cases.append((["export", str(broken), "--to", "glb"], "broken.npz: expected SMPL-X 'poses'"))
    half = tmp_path / "half.csv"
    half.write_text("\n".join(TAKE.read_text().splitlines()[:3])[:-40] + "\n")
    cases.append((["export", str(half), "--to", "arkit-json"], "half.csv: row 3: 60 fields but the header names 63"))
    for argv, message in cases:
        assert main(argv) == 1, argv
        assert message in _error(capsys), argv
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.npz", "half.csv"]  # nothing written


def test_beat_bvh_warns_in_one_line_then_refuses_its_skeleton(tmp_path, capsys):
    need_data(BEAT_BVH)
    assert main(["export", str(BEAT_BVH), "--to", "glb", "-o", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("cospeech: warning: ") and "--fps" in err[0]
    assert err[1].startswith("cospeech: error: ") and "not an SMPL-X skeleton" in err[1]
    assert main(["export", str(BEAT_BVH), "--to", "glb", "--fps", "15", "-o", str(tmp_path)]) == 1
    assert "warning" not in capsys.readouterr().err


def test_never_overwrites_the_input(tmp_path, capsys):
    need_data(NPZ)
    copy = tmp_path / "take.npz"
    copy.write_bytes(NPZ.read_bytes())
    assert main(["export", str(copy), "--to", "npz"]) == 1
    assert "is the input" in _error(capsys) and copy.read_bytes() == NPZ.read_bytes()


def test_generate_and_export_list_every_registered_format():
    for command in ("generate", "export"):
        help_text = build_parser(only=command)._subparsers._group_actions[0].choices[command].format_help()
        for name in EXPORTERS:
            assert f"{name}:" in help_text, (command, name)
    assert {"glb", "arkit-json", "livelink-csv"} <= set(EXPORTERS)
    assert len(ARKIT_52) == 52
