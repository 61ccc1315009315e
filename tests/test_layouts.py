"""Dataset layouts (beat, zeggs, genea, trinity, vocaset, biwi), BVH rigs read as SMPL-X, and motion
resampled to the cache's frame rate.

No sample of ZEGGS, GENEA, Trinity, VOCASET or BIWI is available here, and the BEAT sample has no
face JSON; so each layout's fixture is built in that layout's exact folder structure from the real
shared clips: the shared BEAT take's BVH rows (its 75-joint skeleton, 15 fps as stored) written
as that layout's BVH at the layout's rate (120, 60, 30 or 20 fps; frames in between by slerp) with
the paired BEAT2 speech; BEAT's face JSON from the real Live Link Face take's ARKit curves (another
performer: a layout fixture, not a pairing); VOCASET/BIWI vertex sequences synthesised
deterministically from a real SHOW clip's jaw rotation and FLAME expression (a fixed random basis
on a fixed random template with the datasets' vertex counts) with that clip's speech.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import warnings

import numpy as np
import pytest
import soundfile as sf
from scipy.spatial.transform import Rotation

from cospeech.cli.main import main
from cospeech.data import load_cache, prepare
from cospeech.errors import CospeechError
from cospeech.export.arkit import write_arkit_json
from cospeech.export.retarget import retarget
from cospeech.motion import SMPLX_JOINTS, BlockMotion, SmplxMotion, smplx_skeleton
from cospeech.motion.arkit import ARKIT_52, read_arkit_json, read_livelink_csv
from cospeech.motion.bvh import bvh_text, read_bvh
from cospeech.motion.fk import joint_positions
from cospeech.motion.resample import lerp, resample, sample_times, slerp
from cospeech.motion.rigmap import rig_to_smplx

from .conftest import BEAT2, BEAT2_TAKE, DATA, SHOW_CLIPS, need_data

BEAT_BVH = DATA / "beat_bvh" / f"{BEAT2_TAKE}.bvh"
BEAT_WAV = BEAT2 / "wave16k" / f"{BEAT2_TAKE}.wav"
BEAT_FPS = 15.0  # the shared BVH keeps every 8th frame of BEAT's 120 fps (its header still says 120)
ROWS = 60  # 4 s of the take for the layout fixtures


# -- resampling against closed forms -------------------------------------------------------------
def _analytic(fps: float, seconds: float):
    """A motion whose every value is a closed form of time: each joint turns at a constant angular
    velocity about a fixed axis after a fixed offset rotation (so slerp is exact and axis-angle
    lerp is not), the root moves linearly, the expression is linear in time."""
    t = np.arange(int(round(seconds * fps)) + 1) / fps
    rng = np.random.default_rng(3)
    offset = Rotation.from_rotvec(rng.normal(0, 0.8, (55, 3)))
    omega = rng.normal(0, 1.5, (55, 3))  # rad/s, in each joint's rotated frame

    def at(times):
        r = [offset * Rotation.from_rotvec(np.outer(np.full(55, s), [1.0]) * omega) for s in times]
        poses = np.stack([x.as_rotvec() for x in r])
        trans = np.outer(times, [0.3, -0.1, 0.7]) + [0.1, 1.0, -0.2]
        expr = np.outer(times, np.linspace(-1, 1, 100))
        return poses, trans, expr

    poses, trans, expr = at(t)
    return SmplxMotion(poses, trans, expr, fps), at


def _angle(a, b):
    return np.linalg.norm((Rotation.from_rotvec(a.reshape(-1, 3)).inv() * Rotation.from_rotvec(b.reshape(-1, 3)))
                          .as_rotvec(), axis=-1)


@pytest.mark.parametrize("fps_in,fps_out", [(60.0, 30.0), (120.0, 30.0), (60.0, 25.0), (120.0, 45.0)])
def test_resample_matches_the_closed_form(fps_in, fps_out):
    motion, at = _analytic(fps_in, 2.0)
    out = resample(motion, fps_out)
    n = int(2.0 * fps_out) + 1  # frames k / fps_out within [0, 2] s
    assert out.n_frames == n and out.fps == fps_out
    poses, trans, expr = at(np.arange(n) / fps_out)
    assert _angle(out.poses, poses).max() < 1e-5  # slerp on a constant-velocity rotation is exact
    np.testing.assert_allclose(out.trans, trans, atol=1e-5)
    np.testing.assert_allclose(out.expressions, expr, atol=1e-5)
    if fps_in / fps_out != int(fps_in / fps_out):  # between frames: naive axis-angle lerp would be off
        u = sample_times(motion.n_frames, fps_in, fps_out)
        naive = lerp(motion.poses, u)
        assert _angle(naive, poses).max() > 1e-3


def test_resample_block_motion_and_identity():
    w = np.linspace(0, 1, 121)[:, None] * np.linspace(0.2, 1.0, 52)  # (121, 52) linear in time at 120 fps
    m = BlockMotion(120.0, {"arkit": w.astype(np.float32)}, {"arkit": "blendshape"})
    out = resample(m, 30.0)
    assert out.n_frames == 31
    np.testing.assert_allclose(out.blocks["arkit"], w[::4], atol=1e-6)
    assert resample(out, 30.0) is out
    aa = np.zeros((3, 2, 3), np.float32)
    aa[:, 0, 2] = [0.0, 1.0, 3.0]  # two steps about z: 1 rad then 2 rad
    np.testing.assert_allclose(slerp(aa, np.array([0.5, 1.5]))[:, 0, 2], [0.5, 2.0], atol=1e-6)


# -- BVH rigs as SMPL-X ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def beat_bvh():
    need_data(BEAT_BVH)
    return read_bvh(BEAT_BVH, fps=BEAT_FPS)


@pytest.fixture(scope="module")
def beat2_motion():
    from cospeech.data.base import Take
    from cospeech.data.beat2 import load_motion

    path = need_data(BEAT2) / "smplxflame_30" / f"{BEAT2_TAKE}.npz"
    return load_motion(Take("beat2", BEAT2_TAKE, "scott", "train", path, path))


def _bones(pos, pairs):
    v = np.stack([pos[:, SMPLX_JOINTS.index(b)] - pos[:, SMPLX_JOINTS.index(a)] for a, b in pairs], axis=1)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


BONES = [("pelvis", "spine1"), ("spine3", "neck"), ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
         ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"), ("left_hip", "left_knee"),
         ("right_knee", "right_ankle")]


def test_rig_to_smplx_is_the_same_block_by_block(beat_bvh, monkeypatch):
    import cospeech.motion.rigmap as rigmap

    whole = rig_to_smplx(beat_bvh)
    monkeypatch.setattr(rigmap, "BLOCK_FRAMES", 100)  # 957 frames in 10 blocks
    blocks = rig_to_smplx(beat_bvh)
    assert np.array_equal(whole.poses, blocks.poses) and np.array_equal(whole.trans, blocks.trans)


def test_beat_rig_read_as_smplx_agrees_with_beat2s_fit(beat_bvh, beat2_motion):
    """The BEAT BVH of the take, read onto SMPL-X, against BEAT2's SMPL-X fit of the same take (a
    different method on the same capture): the median bone-direction difference stays under 20°
    for the spine, arms and legs (measured: 8 to 16°)."""
    m = rig_to_smplx(beat_bvh)
    assert m.n_frames == 957 and m.parts == {"root_orient", "body", "hands"}  # BEAT pins the root: no trajectory
    sk = smplx_skeleton()
    n = min(m.n_frames, len(beat2_motion.poses[::2]))
    mine = _bones(joint_positions(m.poses[:n], m.trans[:n], sk), BONES)
    ref = _bones(joint_positions(beat2_motion.poses[::2][:n], beat2_motion.trans[::2][:n], sk), BONES)
    angle = np.degrees(np.arccos(np.clip((mine * ref).sum(-1), -1, 1)))  # (T, bones)
    assert np.median(angle, axis=0).max() < 20.0
    feet = joint_positions(m.poses, m.trans, sk)[:, :, 1].min(axis=1)
    assert abs(np.percentile(feet, 1)) < 0.05  # the floor near y = 0, as BEAT2's (measured 2.3 cm: other proportions)


def test_retarget_then_read_back_is_the_identity_on_mapped_joints(beat_bvh, beat2_motion):
    """SMPL-X -> BEAT's rig (export) -> SMPL-X (rig_to_smplx): every joint the rig maps comes back
    to within 1e-4 rad; the root path comes back up to a constant height (each side measures its
    own floor)."""
    src = beat2_motion.crop(0, 300)
    aa, root = retarget(src, beat_bvh)
    rig_file = type(beat_bvh)(beat_bvh.names, beat_bvh.parents, beat_bvh.offsets, beat_bvh.channels,
                              np.zeros((300, 1)), 30.0, 300, 30.0)
    rows = _rows(rig_file, aa, root)
    back = rig_to_smplx(rows)
    mapped = [i for i, n in enumerate(SMPLX_JOINTS) if n not in ("jaw", "left_eye_smplhf", "right_eye_smplhf")]
    assert _angle(back.poses[:, mapped], src.poses[:, mapped]).max() < 1e-4
    diff = back.trans - src.trans
    assert np.ptp(diff, axis=0).max() < 1e-4 and np.abs(diff[:, [0, 2]]).max() < 1e-4


def _rows(rig, aa, root):
    """A BvhFile of the rig's hierarchy holding these rotations and root path (via BVH text)."""
    from cospeech.motion.skeleton import Skeleton

    text = bvh_text(Skeleton(rig.names, rig.parents, rig.offsets), aa, root, rig.fps, scale=1.0, order="ZXY")
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.bvh"
        p.write_text(text)
        return read_bvh(p)


# -- layout fixtures ------------------------------------------------------------------------------
def _write_bvh(path, bvh, fps):
    """The first ROWS rows of the shared BEAT take at `fps` (slerp between rows), BEAT's skeleton."""
    from cospeech.motion.skeleton import Skeleton

    u = sample_times(ROWS, BEAT_FPS, fps)
    aa = slerp(bvh.axis_angle()[:ROWS], u)
    root = lerp(bvh.translations()[:ROWS, 0], u)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(bvh_text(Skeleton(bvh.names, bvh.parents, bvh.offsets), aa, root, fps, scale=1.0, order="ZXY"))


def _write_wav(path, seconds=ROWS / BEAT_FPS + 0.2, source=BEAT_WAV):
    wave, rate = sf.read(need_data(source), dtype="float32")
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave[: int(seconds * rate)], rate)


@pytest.fixture(scope="module")
def expected_body(beat_bvh):
    """SMPL-X of the fixture rows at 15 fps: what a 30 fps cache holds at every even frame."""
    return rig_to_smplx(type(beat_bvh)(beat_bvh.names, beat_bvh.parents, beat_bvh.offsets, beat_bvh.channels,
                                       beat_bvh.values[:ROWS], BEAT_FPS, ROWS, BEAT_FPS))


LAYOUT_FPS = {"beat": 120.0, "zeggs": 60.0, "genea": 30.0, "trinity": 20.0}


_TWH = {"Hips": "b_root", "Spine": "b_spine0", "Spine1": "b_spine1", "Spine2": "b_spine2", "Spine3": "b_spine3",
        "Neck": "b_neck0", "Head": "b_head",
        **{f"{Side}{a}": f"b_{Side[0].lower()}_{b}" for Side in ("Left", "Right") for a, b in (
            ("Shoulder", "shoulder"), ("Arm", "arm"), ("ForeArm", "forearm"), ("Hand", "wrist"), ("UpLeg", "upleg"),
            ("Leg", "leg"), ("Foot", "foot"))}}


def _twh_name(name: str) -> str:
    return _TWH.get(name, "b_" + name.lower())


def _bvh_layout(root, kind, bvh):
    fps = LAYOUT_FPS[kind]
    if kind == "beat":
        take = root / "2" / BEAT2_TAKE
        _write_bvh(take.with_suffix(".bvh"), bvh, fps)
        _write_wav(take.with_suffix(".wav"))
        (take.with_suffix(".TextGrid")).write_text("File type = \"ooTextFile\"\n")
        face = read_livelink_csv(need_data(DATA / "arkit_livelink") / "livelink_take.csv", fps=60.0).crop(0, 240)
        write_arkit_json(face, take.with_suffix(".json"))
    elif kind == "zeggs":
        _write_bvh(root / "067_Speech_2_x_1_0.bvh", bvh, fps)
        _write_wav(root / "067_Speech_2_x_1_0.wav")
    elif kind == "genea":  # the skeleton under GENEA 2022's joint names (fingers under names no map knows)
        names = tuple(_twh_name(n) for n in bvh.names)
        twh = type(bvh)(names, bvh.parents, bvh.offsets, bvh.channels, bvh.values, bvh.fps, bvh.header_frames, bvh.fps)
        for split, name in (("trn", "trn_2022_v1_000"), ("val", "val_2022_v1_000")):
            _write_bvh(root / split / "bvh" / f"{name}.bvh", twh, fps)
            _write_wav(root / split / "wav" / f"{name}.wav")
            (root / split / "tsv").mkdir()
            (root / split / "tsv" / f"{name}.tsv").write_text("0.0\t0.5\thello\n")
            (root / split / f"{split}_2022_v1_metadata.csv").write_text(f"{name},finger_incl,{3 if split == 'trn' else 7}\n")
    else:
        _write_bvh(root / "Training_Data" / "Motion" / "Recording_001.bvh", bvh, fps)
        _write_wav(root / "Training_Data" / "Audio" / "Recording_001.wav")


@pytest.fixture(scope="module", params=sorted(LAYOUT_FPS))
def bvh_cache(request, tmp_path_factory, beat_bvh):
    kind = request.param
    root = tmp_path_factory.mktemp(kind)
    _bvh_layout(root / "src", kind, beat_bvh)
    out = root / "cache"
    assert main(["prepare", kind, str(root / "src"), "-o", str(out), "--window", "30"]) == 0
    return kind, out


def test_bvh_layouts_prepare_at_30_fps_with_the_takes_values(bvh_cache, expected_body):
    """Each BVH layout at its own rate (120, 60, 30, 20 fps) caches at 30 fps: the frame count is
    the resampled count, and at every frame that falls on a stored row of the source the body
    rotations are that row's read onto SMPL-X (to BVH text precision)."""
    kind, out = bvh_cache
    cache = load_cache(out)
    assert cache.fps == 30.0
    fps = LAYOUT_FPS[kind]
    n_src = len(sample_times(ROWS, BEAT_FPS, fps))
    frames = len(sample_times(n_src, fps, 30.0))
    take = cache.takes[0]
    assert take.n_frames == frames and take.meta["source_fps"] == fps
    body = cache.spec.decode_blocks(take.motion)["body"]  # (T, 21, 3)
    shared = [k for k in range(frames) if (k * BEAT_FPS / 30) % 1 == 0 and (k * fps / 30) % 1 == 0]
    assert len(shared) >= 10
    want = expected_body.poses[[k // 2 for k in shared]][:, 1:22]
    joints = list(range(21))
    if kind == "genea":  # GENEA's toes and fingers are not mapped: ankles and wrists aim at no child, feet follow
        joints = [j for j in joints if SMPLX_JOINTS[j + 1].split("_")[-1] not in ("ankle", "foot", "wrist")]
    assert _angle(body[shared][:, joints], want[:, joints]).max() < 1e-3
    s = cache.spec.slices()
    assert take.mask[s["body"]].all() and not take.mask[s["root_vel"]].any() and not take.mask[s["expression"]].any()
    if kind == "genea":  # GENEA's own names: body mapped, fingers not; speakers from the metadata csv
        assert sorted((t.meta["split"], t.meta["speaker"]) for t in cache.takes) == [("train", "speaker_3"), ("val", "speaker_7")]
        assert not take.mask[s["hands"]].any()
    else:
        assert take.mask[s["hands"]].all()


@pytest.mark.parametrize("bvh_cache", ["beat"], indirect=True)
def test_beat_face_json_becomes_the_arkit_part(bvh_cache):
    """BEAT's face JSON (60 fps) is the cache's `arkit` part at 30 fps: every other JSON frame."""
    kind, out = bvh_cache
    cache = load_cache(out)
    take = cache.takes[0]
    s = cache.spec.slices()["arkit"]
    assert take.mask[s].all() and take.meta["speaker"] == "scott"
    face = read_livelink_csv(DATA / "arkit_livelink" / "livelink_take.csv", fps=60.0)
    want = face.blocks["arkit"][: 2 * take.n_frames : 2]  # 60 fps -> 30 fps: every other frame
    np.testing.assert_allclose(take.motion[:, s], want[: take.n_frames], atol=2e-6)


@pytest.mark.parametrize("bvh_cache", ["beat", *(pytest.param(k, marks=pytest.mark.slow) for k in ("genea", "trinity", "zeggs"))],
                         indirect=True)
def test_bvh_layouts_train_from_the_cli(bvh_cache, tmp_path, capsys):
    """Prepared, then trained a few steps from the CLI. zeggs, genea and trinity caches hold the
    plain SMPL-X + FLAME spec that the BEAT2/SHOW training tests cover: they run with the slow tests."""
    kind, out = bvh_cache
    run = tmp_path / "run"
    assert main(["train", "--data", str(out), "-o", str(run), "--preset", "tiny", "--steps", "3", "--batch-size", "2"]) == 0
    assert "trained to step 3" in capsys.readouterr().out
    losses = [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert losses and np.isfinite(losses).all()
    if kind == "beat":  # body and ARKit face from one model: SMPL-X writers and ARKit writers both
        speech = need_data(DATA / "speech") / "arctic_a0009.wav"
        assert main(["generate", str(speech), "-m", str(run), "-o", str(tmp_path / "g"), "--steps", "2",
                     "--formats", "npz,arkit-json"]) == 0
        with np.load(tmp_path / "g" / "arctic_a0009.npz") as d:
            assert d["poses"].shape == (93, 165) and np.isfinite(d["poses"]).all()
        doc = json.loads((tmp_path / "g" / "arctic_a0009_arkit.json").read_text())
        weights = np.array([f["weights"] for f in doc["frames"]])
        assert doc["metadata"]["source"] == "arkit" and weights.shape == (93, 52) and 0 <= weights.min() <= weights.max() <= 1


# -- face vertex layouts --------------------------------------------------------------------------
class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 strings (BINSTRING), as FaceFormer's templates.pkl holds its arrays."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj):
        n = len(obj)
        self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj if n < 256 else pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


VERTEX = {"vocaset": (5023, 60.0, ("FaceTalk_170725_00137_TA_sentence01", "FaceTalk_170728_03272_TA_sentence02")),
          "biwi": (23370, 25.0, ("F2_e01", "M3_e02"))}
CLIP_FRAMES = 120  # 4 s of a SHOW clip at 30 fps


@pytest.fixture(scope="module", params=sorted(VERTEX))
def vertex_cache(request, tmp_path_factory):
    """VOCASET / BIWI layout with two subjects: vertices = subject template + basis · (jaw angle,
    10 FLAME expression coefficients) of a real SHOW clip, at the dataset's rate (lerp from 30 fps)."""
    from cospeech.data.unpickle import load_pickle

    kind = request.param
    n_vertices, fps, names = VERTEX[kind]
    if len(SHOW_CLIPS) < 2:
        need_data(DATA / "show" / "missing")
    root = tmp_path_factory.mktemp(kind)
    src = root / "src"
    (src / "vertices_npy").mkdir(parents=True)
    rng = np.random.default_rng(7)
    basis = rng.normal(0, 1e-3, (3 * n_vertices, 11)).astype(np.float32)
    templates, signals = {}, {}
    for clip, name in zip(SHOW_CLIPS, names):
        d = load_pickle(clip)
        signal30 = np.concatenate([np.asarray(d["jaw_pose"])[:CLIP_FRAMES, :1],
                                   np.asarray(d["expression"])[:CLIP_FRAMES, :10]], axis=1).astype(np.float64)
        signal = lerp(signal30, sample_times(CLIP_FRAMES, 30.0, fps))  # (T, 11) at the dataset's rate
        subject = name.rsplit("_", 1)[0]
        templates[subject] = rng.normal(0, 0.05, (n_vertices, 3)).astype(np.float32)
        np.save(src / "vertices_npy" / f"{name}.npy", (templates[subject].reshape(-1) + signal @ basis.T).astype(np.float32))
        _write_wav(src / "wav" / f"{name}.wav", CLIP_FRAMES / 30 + 0.2, clip.with_suffix(".wav"))
        signals[name] = signal
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(templates)
    (src / "templates.pkl").write_bytes(buf.getvalue())
    out = root / "cache"
    assert main(["prepare", kind, str(src), "-o", str(out), "--window", "30"]) == 0
    return kind, out, basis, signals


def test_vertex_layouts_cache_offsets_from_the_template(vertex_cache):
    """The cache holds each frame's vertices minus its subject's template (read from a Python 2
    pickle by the restricted unpickler), at 30 fps: VOCASET's 60 fps every other frame, BIWI's
    25 fps interpolated, both checked against the closed form basis · signal."""
    kind, out, basis, signals = vertex_cache
    cache = load_cache(out)
    n_vertices, fps, _ = VERTEX[kind]
    assert cache.fps == 30.0 and cache.spec.dim == 3 * n_vertices and cache.spec.names == ("face_vertices",)
    assert sorted(cache.speakers) == sorted(n.rsplit("_", 1)[0] for n in signals)
    for take in cache.takes:
        signal = signals[take.meta["id"]]
        u = sample_times(len(signal), fps, 30.0)
        assert take.n_frames == len(u) and take.mask.all()
        want = lerp(signal, u) @ basis.T  # (T, 3V)
        np.testing.assert_allclose(take.motion, want, atol=2e-6)
        if kind == "vocaset":  # 60 -> 30 fps keeps every other frame of the 30 fps source signal
            np.testing.assert_allclose(lerp(signal, u), signal[::2][: len(u)], atol=1e-9)


@pytest.mark.parametrize("vertex_cache", ["vocaset", pytest.param("biwi", marks=pytest.mark.slow)], indirect=True)
def test_vertex_layouts_train_from_the_cli(vertex_cache, tmp_path, capsys):
    """Prepared, then trained a few steps from the CLI (BIWI's 70 110 channels take ~10 s: slow)."""
    kind, out, _, _ = vertex_cache
    run = tmp_path / "run"
    assert main(["train", "--data", str(out), "-o", str(run), "--preset", "tiny", "--steps", "3", "--batch-size", "2"]) == 0
    assert "trained to step 3" in capsys.readouterr().out
    losses = [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert losses and np.isfinite(losses).all()


# -- real files and bad layouts -------------------------------------------------------------------
def test_the_real_beat_take_with_its_real_rate(tmp_path):
    """The shared BEAT take itself in BEAT's layout: its header claims 7669 frames at 120 fps for
    957 rows; --source-fps 15 states the real rate, and the 30 fps cache holds 2 × 956 + 1 frames.
    BEAT2's fit of the same take then joins the same cache."""
    src = tmp_path / "beat" / "2"
    src.mkdir(parents=True)
    (src / BEAT_BVH.name).symlink_to(need_data(BEAT_BVH))
    (src / BEAT_WAV.name).symlink_to(need_data(BEAT_WAV))
    out = tmp_path / "cache"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # with the rate stated, no header warning
        assert main(["prepare", "beat", str(tmp_path / "beat"), "-o", str(out), "--source-fps", "15"]) == 0
    take = load_cache(out).takes[0]
    assert take.n_frames == 1913 and take.meta["source_fps"] == 15.0
    s = load_cache(out).spec.slices()
    assert not take.mask[s["arkit"]].any()  # no face JSON: the ARKit part is masked
    # BEAT2's take of the same capture joins the cache (its spec is the cache's): FLAME face, no ARKit
    assert main(["prepare", "beat2", str(need_data(BEAT2)), "-o", str(out)]) == 0
    both = {t.meta["dataset"]: t for t in load_cache(out).takes}
    assert set(both) == {"beat", "beat2"}
    assert both["beat2"].mask[s["expression"]].all() and not both["beat2"].mask[s["arkit"]].any()


def test_a_walking_mixamo_rig_keeps_its_root_path(tmp_path):
    """Another real skeleton (Mixamo names with a namespace, a walk whose root moves) in the ZEGGS
    layout: its root trajectory is claimed and scaled to metres by the hip height."""
    rig = need_data(DATA / "rigs" / "mixamo_walk.bvh")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "001_Walk_0_x_1_0.bvh").symlink_to(rig)
    _write_wav(tmp_path / "src" / "001_Walk_0_x_1_0.wav", 2.4, need_data(DATA / "speech") / "arctic_a0007.wav")
    assert main(["prepare", "zeggs", str(tmp_path / "src"), "-o", str(tmp_path / "c")]) == 0
    cache = load_cache(tmp_path / "c")
    take = cache.takes[0]
    assert take.meta["speaker"] == "Walk" and "root_vel" in take.meta["parts"] and take.n_frames == 69
    path = cache.spec.decode_blocks(take.motion)["root_vel"]  # (T, 3) anchored: horizontal from the first frame
    bvh = read_bvh(rig)
    from cospeech.motion.rigmap import hip_height_ratio, joint_map

    ratio = hip_height_ratio(joint_map(bvh.names), bvh.parents, bvh.offsets)
    hips = bvh.translations()[:, 0]
    np.testing.assert_allclose(path[:, [0, 2]], (hips[:, [0, 2]] - hips[0, [0, 2]]) / ratio, atol=1e-4)
    assert 0.3 < np.ptp(path[:, 2]) < 3.0  # the walk's 94 cm forward in metres (not centimetres)


@pytest.mark.parametrize("kind,expected", [
    ("beat", "<speaker>/<take>.bvh"), ("zeggs", "<take>.bvh beside <take>.wav"),
    ("genea", "<split>/bvh/<take>.bvh + <split>/wav/<take>.wav"), ("trinity", "Motion/<take>.bvh + Audio/<take>.wav"),
    ("vocaset", "vertices_npy/, wav/, templates.pkl"), ("biwi", "vertices_npy/<take>.npy"),
])
def test_an_empty_folder_names_the_expected_layout(kind, expected, tmp_path, capsys):
    assert main(["prepare", kind, str(tmp_path), "-o", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cospeech: error:") and expected in err and "\n" not in err


def _vocaset(tmp_path, verts, templates: bytes):
    src = tmp_path / "v"
    (src / "vertices_npy").mkdir(parents=True)
    np.save(src / "vertices_npy" / "FaceTalk_1_TA_sentence01.npy", verts)
    _write_wav(src / "wav" / "FaceTalk_1_TA_sentence01.wav", 1.0, need_data(DATA / "speech") / "arctic_a0007.wav")
    (src / "templates.pkl").write_bytes(templates)
    return src


@pytest.mark.parametrize("case,match", [
    ("no subject", "no template for subject 'FaceTalk_1_TA'"),
    ("wrong width", r"expected \(T, 15069\) vertex positions"),
    ("hostile pickle", "cannot read this pickle safely"),
])
def test_bad_vertex_takes_are_one_line_errors(case, match, tmp_path):
    good = np.zeros((30, 15069), np.float32)
    if case == "no subject":
        src = _vocaset(tmp_path, good, pickle.dumps({"FaceTalk_2_TA": np.zeros((5023, 3), np.float32)}))
    elif case == "wrong width":
        src = _vocaset(tmp_path, good[:, :300], pickle.dumps({"FaceTalk_1_TA": np.zeros((5023, 3), np.float32)}))
    else:
        src = _vocaset(tmp_path, good, b"cos\nsystem\n(S'echo pwned'\ntR.")
    with pytest.raises(CospeechError, match=match):
        prepare("vocaset", src, tmp_path / "c", progress=False)


def test_a_rig_with_other_joint_names_is_a_one_line_error(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "take.bvh").write_text("HIERARCHY\nROOT root\n{\n\tOFFSET 0 0 0\n\tCHANNELS 6 Xposition Yposition Zposition "
                                  "Zrotation Xrotation Yrotation\n\tEnd Site\n\t{\n\t\tOFFSET 0 1 0\n\t}\n}\n"
                                  "MOTION\nFrames: 2\nFrame Time: 0.0333333\n0 0 0 0 0 0\n0 0 0 0 0 0\n")
    _write_wav(src / "take.wav", 1.0, need_data(DATA / "speech") / "arctic_a0007.wav")
    with pytest.raises(CospeechError, match="take.bvh: the rig's joints are not named like BEAT's"):
        prepare("zeggs", src, tmp_path / "c", progress=False)


def test_read_arkit_json_maps_by_name_and_measures_the_rate(tmp_path):
    names = list(reversed(ARKIT_52))  # another order than ARKit's: mapped by name
    rows = np.linspace(0, 1, 5 * 52).reshape(5, 52)
    doc = {"names": names, "frames": [{"time": i / 60, "weights": list(r), "rotation": [0, 0, 0]} for i, r in enumerate(rows)]}
    (tmp_path / "f.json").write_text(json.dumps(doc))
    m = read_arkit_json(tmp_path / "f.json")
    assert abs(m.fps - 60.0) < 1e-9
    np.testing.assert_allclose(m.blocks["arkit"], rows[:, ::-1], atol=1e-6)
    (tmp_path / "g.json").write_text(json.dumps({"names": names[:50], "frames": doc["frames"]}))
    with pytest.raises(CospeechError, match="lack 2 ARKit curves"):
        read_arkit_json(tmp_path / "g.json")


def test_prepare_fps_sets_the_model_rate_and_a_cache_keeps_one(tmp_path, capsys):
    """--fps 60 resamples the 30 fps Mixamo walk (69 frames) to 137 frames, which lie on the
    original rotations at every even frame; a cache holds one rate, and a rate out of range is refused."""
    rig = need_data(DATA / "rigs" / "mixamo_walk.bvh")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "001_Walk_0_x_1_0.bvh").symlink_to(rig)
    _write_wav(tmp_path / "src" / "001_Walk_0_x_1_0.wav", 2.4, need_data(DATA / "speech") / "arctic_a0007.wav")
    out = tmp_path / "c60"
    assert main(["prepare", "zeggs", str(tmp_path / "src"), "-o", str(out), "--fps", "60"]) == 0
    cache = load_cache(out)
    take = cache.takes[0]
    assert cache.fps == 60.0 and take.n_frames == 137 and take.meta["source_fps"] == 30.0
    body = cache.spec.decode_blocks(take.motion)["body"]
    want = rig_to_smplx(read_bvh(rig)).poses[:, 1:22]
    assert _angle(body[::2], want).max() < 1e-4
    capsys.readouterr()
    assert main(["prepare", "zeggs", str(tmp_path / "src"), "-o", str(out), "--fps", "25"]) == 1
    assert "holds takes at 60 fps, not 25" in capsys.readouterr().err
    assert main(["prepare", "zeggs", str(tmp_path / "src"), "-o", str(tmp_path / "c0"), "--fps", "0"]) == 1
    assert "fps must be a frame rate in (0, 1000]" in capsys.readouterr().err
