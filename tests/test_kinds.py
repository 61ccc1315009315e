"""Part kinds (encode, decode, normalisation, loss mask), motion as named blocks, the Live Link
ARKit reader, and the bundled model generating exactly what it generated before kinds existed."""

import csv
import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cospeech.errors import CospeechError
from cospeech.generator import bundled_model_path
from cospeech.metrics.face import arkit_face_metrics, flame_face
from cospeech.motion import (
    ARKIT_52, KINDS, BlockMotion, MotionSpec, Normalizer, Part, SmplxMotion, read_livelink_csv, smplx_flame_spec,
)
from cospeech.motion.kinds import Kind, register

from .conftest import BEAT2, BEAT2_TAKE, DATA, need_data

LIVELINK = DATA / "arkit_livelink" / "livelink_take.csv"


def _beat2(frames=120):
    need_data(BEAT2)
    from cospeech.data import beat2

    take = [t for t in beat2.takes(BEAT2) if t.id == BEAT2_TAKE][0]
    return beat2.load_motion(take).crop(0, frames)


def _signature(a) -> list[float]:
    """Sum, absolute sum and a cosine-weighted sum: three numbers that move with any change."""
    a = np.asarray(a, np.float64)
    w = np.cos(np.arange(a.size)).reshape(a.shape)
    return [a.sum(), np.abs(a).sum(), (a * w).sum()]


# -- kinds, one by one ---------------------------------------------------------------------------

def test_rot6d_is_the_first_two_matrix_columns_and_round_trips():
    rng = np.random.default_rng(0)
    aa = (rng.normal(size=(50, 4, 3)) * rng.uniform(0, 1.2, size=(50, 4, 1))).astype(np.float32)
    aa[0, 0] = [np.pi - 1e-3, 0, 0]  # near the half turn
    part = Part("limbs", "rot6d", 24, (3, 5, 7, 9))
    x = KINDS["rot6d"].encode(part, aa)
    assert x.shape == (50, 24) and x.dtype == np.float32
    m = Rotation.from_rotvec(aa.reshape(-1, 3).astype(np.float64)).as_matrix().reshape(50, 4, 3, 3)
    np.testing.assert_allclose(x.reshape(50, 4, 6), np.concatenate([m[..., 0], m[..., 1]], -1), atol=1e-6)
    back = KINDS["rot6d"].decode(part, x)
    assert back.shape == (50, 4, 3)
    np.testing.assert_allclose(Rotation.from_rotvec(back.reshape(-1, 3)).as_matrix().reshape(m.shape), m, atol=1e-5)
    inside = np.linalg.norm(aa, axis=-1) < np.pi - 1e-2
    assert inside.mean() > 0.9
    np.testing.assert_allclose(back[inside], aa[inside], atol=1e-5)  # below π the axis-angle itself comes back


def test_velocity_encodes_steps_and_integrates_back():
    part = Part("root", "velocity", 3)
    traj = np.array([[0, 1, 0], [1, 1, 0], [3, 1, 0], [6, 1, 2]], np.float32)
    vel = KINDS["velocity"].encode(part, traj)
    np.testing.assert_array_equal(vel, [[1, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 2]])  # frame 0 repeats frame 1
    np.testing.assert_array_equal(KINDS["velocity"].decode(part, vel, start=traj[0]), traj)
    np.testing.assert_array_equal(KINDS["velocity"].decode(part, vel), traj - traj[0])  # from the origin
    with pytest.raises(CospeechError, match="start"):
        KINDS["velocity"].decode(part, vel, start=(0.0, 0.0))
    real = _beat2().trans
    np.testing.assert_allclose(KINDS["velocity"].decode(part, KINDS["velocity"].encode(part, real), real[0]), real, atol=1e-5)


def test_anchored_root_keeps_height_and_sets_the_start_apart():
    part = Part("root_vel", "anchored", 3)
    traj = np.array([[2, 1.0, 5], [3, 1.5, 5], [1, 0.5, 7]], np.float32)
    feats = KINDS["anchored"].encode(part, traj)
    np.testing.assert_array_equal(feats, [[0, 1.0, 0], [1, 1.5, 0], [-1, 0.5, 2]])  # y as is, x and z from frame 0
    np.testing.assert_array_equal(KINDS["anchored"].decode(part, feats, start=(2.0, 9.0, 5.0)), traj)  # start's y unused
    np.testing.assert_array_equal(KINDS["anchored"].decode(part, feats), feats)
    with pytest.raises(CospeechError, match="start"):
        KINDS["anchored"].decode(part, feats, start=(0.0, 0.0))
    with pytest.raises(CospeechError, match="dim = 3"):
        MotionSpec((Part("root_vel", "anchored", 2),))
    real = _beat2().trans
    np.testing.assert_allclose(KINDS["anchored"].decode(part, KINDS["anchored"].encode(part, real), real[0]), real, atol=1e-6)


def test_an_anchored_root_cannot_drift_where_velocity_does():
    """The same small bias on every frame's features: integrated velocity walks away without
    bound, the anchored root moves by the bias once."""
    n, bias = 18000, np.float32(1e-4)  # 10 minutes at 30 fps, 0.1 mm per frame
    still = np.tile(np.array([[0.0, 1.3, 0.0]], np.float32), (n, 1))
    for kind, drift in (("velocity", n * bias), ("anchored", bias)):
        part = Part("root_vel", kind, 3)
        feats = KINDS[kind].encode(part, still) + bias
        path = KINDS[kind].decode(part, feats, start=still[0])
        assert np.abs(path - still).max() == pytest.approx(drift, rel=1e-2)


def test_coeff_is_identity_and_keeps_the_leading_coefficients():
    rng = np.random.default_rng(1)
    expr = rng.normal(size=(30, 100)).astype(np.float32)
    full, lead = Part("expression", "coeff", 100), Part("expression", "coeff", 50)
    np.testing.assert_array_equal(KINDS["coeff"].decode(full, KINDS["coeff"].encode(full, expr)), expr)
    np.testing.assert_array_equal(KINDS["coeff"].encode(lead, expr), expr[:, :50])
    with pytest.raises(CospeechError, match="≥ 120"):
        KINDS["coeff"].encode(Part("expression", "coeff", 120), expr)


def test_blendshape_clips_on_decode_and_floors_its_std():
    part = Part("arkit", "blendshape", 3)
    kind = KINDS["blendshape"]
    x = np.array([[-0.2, 0.5, 1.3], [0.0, 1.0, 0.25]], np.float32)
    np.testing.assert_array_equal(kind.decode(part, x), [[0.0, 0.5, 1.0], [0.0, 1.0, 0.25]])
    np.testing.assert_array_equal(kind.encode(part, x[1:]), x[1:])
    with pytest.raises(CospeechError, match=r"\[0, 1\].*-0.2"):
        kind.check_block("arkit", x)
    mean, std = kind.stats(part, np.array([0.1, 0.2, 0.3], np.float32), np.array([1e-4, 0.01, 0.3], np.float32))
    np.testing.assert_allclose(std, [0.01, 0.01, 0.3])
    np.testing.assert_array_equal(mean, np.array([0.1, 0.2, 0.3], np.float32))


def test_vertex_offsets_reshape_exactly_and_normalise_per_vertex():
    part = Part("face_vertices", "vertex_offset", 6)
    kind = KINDS["vertex_offset"]
    v = np.arange(2 * 2 * 3, dtype=np.float32).reshape(2, 2, 3) / 1000  # metres
    x = kind.encode(part, v)
    np.testing.assert_array_equal(x, v.reshape(2, 6))
    np.testing.assert_array_equal(x[1, 3:], v[1, 1])  # vertex 1 of frame 1 is channels 3..5
    np.testing.assert_array_equal(kind.decode(part, x), v)
    _, std = kind.stats(part, np.zeros(6, np.float32), np.array([1, 2, 2, 3, 0, 4], np.float32))
    np.testing.assert_allclose(std, [np.sqrt(3)] * 3 + [np.sqrt(25 / 3)] * 3, rtol=1e-6)
    with pytest.raises(CospeechError, match="3 × vertices"):
        Part("face_vertices", "vertex_offset", 7)
    with pytest.raises(CospeechError, match=r"\(2, 2, 3\)"):
        kind.encode(part, v.reshape(2, 6))


def test_loss_mask_per_kind_and_in_the_spec():
    for name, part in [("rot6d", Part("jaw", "rot6d", 6, (22,))), ("velocity", Part("root", "velocity", 3)),
                       ("coeff", Part("e", "coeff", 4)), ("blendshape", Part("arkit", "blendshape", 52)),
                       ("vertex_offset", Part("v", "vertex_offset", 9))]:
        np.testing.assert_array_equal(KINDS[name].loss_mask(part, True), np.ones(part.dim, bool))
        np.testing.assert_array_equal(KINDS[name].loss_mask(part, False), np.zeros(part.dim, bool))
    spec = smplx_flame_spec()
    show = {"root_orient", "body", "jaw", "eyes", "hands_pca", "expression"}  # SHOW: no trajectory, PCA hands
    mask = spec.channel_mask(show)
    assert mask.shape == (457,) and mask.sum() == 457 - 3 - 180
    assert not mask[:3].any() and mask[3:153].all() and not mask[153:333].any() and mask[333:].all()


def test_part_checks():
    with pytest.raises(CospeechError, match="unknown kind 'quaternion'"):
        Part("body", "quaternion", 4)
    with pytest.raises(CospeechError, match="dim = 6 × joints"):
        Part("body", "rot6d", 12, (1,))
    with pytest.raises(CospeechError, match="takes no joints"):
        Part("expression", "coeff", 3, (1, 2, 3))
    with pytest.raises(CospeechError, match="twice"):
        MotionSpec((Part("a", "coeff", 1), Part("a", "coeff", 2)))


def test_a_kind_is_added_in_one_place():
    @register
    class Doubled(Kind):
        name = "test_doubled"

        def encode(self, part, block):
            return 2 * super().encode(part, block)

        def decode(self, part, x, start=None):
            return x / 2

    try:
        spec = MotionSpec((Part("w", "test_doubled", 2), Part("arkit", "blendshape", 1)))
        motion = BlockMotion(30.0, {"w": np.ones((3, 2)), "arkit": np.full((3, 1), 0.5)},
                             {"w": "test_doubled", "arkit": "blendshape"})
        feats = spec.encode(motion)
        np.testing.assert_array_equal(feats, [[2, 2, 0.5]] * 3)
        back = spec.decode(feats, 30.0)
        assert isinstance(back, BlockMotion) and back.kinds == {"w": "test_doubled", "arkit": "blendshape"}
        np.testing.assert_array_equal(back.blocks["w"], motion.blocks["w"])
    finally:
        del KINDS["test_doubled"]


# -- motion as blocks ---------------------------------------------------------------------------

def test_smplx_blocks_are_its_real_parts_and_rebuild_it():
    motion = _beat2(60)
    blocks = motion.blocks
    assert set(blocks) == set(motion.parts) and "hands_pca" not in blocks
    np.testing.assert_array_equal(blocks["jaw"][:, 0], motion.poses[:, 22])
    np.testing.assert_array_equal(blocks["hands"], motion.poses[:, 25:])
    np.testing.assert_array_equal(blocks["root_vel"], motion.trans)
    assert motion.has("expression") and not motion.has("hands_pca") and not motion.has("arkit")
    again = SmplxMotion.from_blocks(blocks, motion.fps)
    for field in ("poses", "trans", "expressions"):
        np.testing.assert_array_equal(getattr(again, field), getattr(motion, field))
    assert again.parts == motion.parts
    with pytest.raises(CospeechError, match="hand_pca is None"):
        SmplxMotion(motion.poses, motion.trans, motion.expressions, 30.0, parts={"hands_pca"})


def test_require_names_what_is_missing_and_why():
    motion = _beat2(10)
    body_only = SmplxMotion(motion.poses, motion.trans, motion.expressions, 30.0, parts={"root_vel", "body"})
    body_only.require("body", purpose="BVH export")  # present: no error
    with pytest.raises(CospeechError) as err:
        body_only.require("expression", purpose="ARKit export")
    assert str(err.value) == "this motion has no face ('expression'); ARKit export needs one (it has: root_vel, body)"
    with pytest.raises(CospeechError) as err:
        flame_face(body_only)
    assert str(err.value) == ("this motion has no jaw ('jaw') and no face ('expression'); FLAME face scoring needs "
                              "them (it has: root_vel, body)")
    curves = BlockMotion(60.0, {"arkit": np.zeros((5, 52))}, {"arkit": "blendshape"})
    with pytest.raises(CospeechError, match=r"^this motion has no body \('body'\); BVH export needs one \(it has: arkit\)$"):
        curves.require("body", purpose="BVH export")


def test_block_motion_checks_its_blocks():
    with pytest.raises(CospeechError, match="same blocks"):
        BlockMotion(30.0, {"arkit": np.zeros((4, 52))}, {"face": "blendshape"})
    with pytest.raises(CospeechError, match="differ in length"):
        BlockMotion(30.0, {"a": np.zeros((4, 2)), "b": np.zeros((5, 2))}, {"a": "coeff", "b": "coeff"})
    with pytest.raises(CospeechError, match=r"'arkit'.*\[0, 1\]"):
        BlockMotion(30.0, {"arkit": np.full((4, 52), 1.5)}, {"arkit": "blendshape"})
    with pytest.raises(CospeechError, match=r"\(T, J, 3\)"):
        BlockMotion(30.0, {"spine": np.zeros((4, 6))}, {"spine": "rot6d"})
    with pytest.raises(CospeechError, match="NaN"):
        BlockMotion(30.0, {"a": np.full((4, 2), np.nan)}, {"a": "coeff"})
    m = BlockMotion(30.0, {"a": np.arange(8.0).reshape(4, 2)}, {"a": "coeff"}).crop(1, 3)
    assert m.n_frames == 2 and m.duration == pytest.approx(2 / 30)
    np.testing.assert_array_equal(m.blocks["a"], [[2, 3], [4, 5]])


def test_fit_normalizer_applies_each_kinds_rule():
    spec = MotionSpec((Part("expression", "coeff", 2), Part("arkit", "blendshape", 2), Part("v", "vertex_offset", 3)))
    rng = np.random.default_rng(2)
    a = np.concatenate([rng.normal(size=(200, 2)), np.c_[rng.uniform(0, 1, 200), np.full(200, 1e-3)],
                        rng.normal(size=(200, 3)) * [0.001, 0.002, 0.002]], axis=1)
    plain = Normalizer.fit([a])
    norm = spec.fit_normalizer([a])
    np.testing.assert_array_equal(norm.mean, plain.mean)
    np.testing.assert_array_equal(norm.std[:3], plain.std[:3])  # coeff and a moving shape: per channel
    assert plain.std[3] == pytest.approx(1e-4) and norm.std[3] == pytest.approx(0.01)  # a still shape: floored
    np.testing.assert_allclose(norm.std[4:], np.sqrt((plain.std[4:] ** 2).mean()), rtol=1e-6)  # one std per vertex
    np.testing.assert_allclose(norm.std[4:], 0.001 * np.sqrt(3), rtol=0.1)


# -- the SMPL-X spec did not move ------------------------------------------------------------------

def test_bundled_spec_json_reads_and_writes_back_unchanged():
    stored = json.loads((bundled_model_path() / "model.json").read_text())["config"]["spec"]
    spec = MotionSpec.from_dict(stored)
    assert spec == smplx_flame_spec() and spec.is_smplx
    assert spec.to_dict() == stored
    # the oldest form: no "joints" key on parts without joints
    old = {"parts": [{k: v for k, v in p.items() if k != "joints" or v} for p in stored["parts"]]}
    assert MotionSpec.from_dict(old) == spec


def test_smplx_encode_is_unchanged_on_real_takes():
    """Features of real takes as the spec computed them before kinds (recorded from that code)."""
    spec = smplx_flame_spec("velocity")
    feats = spec.encode(_beat2())
    assert feats.shape == (120, 457) and feats.dtype == np.float32
    np.testing.assert_allclose(_signature(feats), [11757.002055838802, 26048.852644239145, 16.816991395316798], rtol=1e-6)
    from cospeech.data import show

    from .conftest import SHOW

    need_data(SHOW)
    motion = show.load_motion([t for t in show.takes(SHOW) if t.id == "chemistry/68991-00_00_23-00_00_33"][0])
    np.testing.assert_allclose(_signature(spec.encode(motion)), [12817.088473920354, 45952.934393374, -17.190608849200153],
                               rtol=1e-6)


def test_bundled_model_generates_the_same_motion():
    """Seed 0 on the bundled sample, 5 DDIM steps: the numbers recorded when the model was trained
    (re-record them only with a new bundled model)."""
    import soundfile as sf

    import cospeech
    from cospeech.cli.main import example_speech

    model = cospeech.load_model()
    wave, sr = sf.read(example_speech(), dtype="float32")
    feats = model.sample_features(model.audio_features(wave, sr), seed=0, steps=5)
    np.testing.assert_allclose(_signature(feats), [12480.307857502485, 28967.839467569953, -0.8697335351165236], rtol=1e-5)
    motion = model.cfg.spec.decode(feats, model.cfg.fps, origin=model.cfg.origin)
    assert isinstance(motion, SmplxMotion) and motion.poses.shape == (120, 55, 3)
    assert motion.parts == set(model.cfg.spec.names)
    expected = {
        "poses": [-409.42608117351494, 3937.991126430712, 0.720156170018746],
        "trans": [147.3013826161623, 173.75972808897495, 0.9550169183736362],
        "expressions": [-501.6580376503989, 9905.670801865868, -13.398887854511472],
        "hand_pca": [948.4953556628898, 1751.7069039763883, 5.103963571772856],
    }
    for field, ref in expected.items():
        np.testing.assert_allclose(_signature(getattr(motion, field)), ref, rtol=1e-5, atol=1e-3, err_msg=field)
    # the anchored root: height as generated, the floor position from the model's origin
    np.testing.assert_array_equal(motion.trans[:, 1], feats[:, 1])
    np.testing.assert_allclose(motion.trans[:, [0, 2]], feats[:, [0, 2]] + np.asarray(model.cfg.origin, np.float32)[[0, 2]],
                               rtol=1e-6)
    # the same features decoded twice: bit for bit
    np.testing.assert_array_equal(model.cfg.spec.decode(feats, 30.0, model.cfg.origin).poses, motion.poses)


# -- ARKit curves from Live Link Face ------------------------------------------------------------

def test_livelink_take_reads_by_column_name():
    need_data(LIVELINK)
    motion = read_livelink_csv(LIVELINK)
    curves = motion.blocks["arkit"]
    assert isinstance(motion, BlockMotion) and motion.kinds == {"arkit": "blendshape"}
    assert curves.shape == (1218, 52) and motion.n_frames == 1218
    assert motion.fps == pytest.approx(59.904, abs=1e-3)  # 1217 frame steps over 20.3157 s of timecode
    assert motion.duration == pytest.approx(20.33, abs=0.01)
    assert curves.min() >= 0.0 and curves.max() <= 1.0
    with open(LIVELINK, newline="") as f:
        rows = list(csv.DictReader(f))
    for name in ("jawLeft", "jawRight", "mouthLeft", "mouthRight", "jawOpen", "eyeBlinkRight"):
        column = np.array([float(r[name[0].upper() + name[1:]]) for r in rows], np.float32)
        np.testing.assert_array_equal(curves[:, ARKIT_52.index(name)], column)
    assert curves[:, ARKIT_52.index("jawOpen")].max() == pytest.approx(0.7545, abs=1e-4)
    assert curves[:, ARKIT_52.index("tongueOut")].max() < 1e-3
    assert read_livelink_csv(LIVELINK, fps=60.0).fps == 60.0


def test_livelink_take_encodes_and_decodes_exactly():
    need_data(LIVELINK)
    motion = read_livelink_csv(LIVELINK)
    spec = MotionSpec.for_motion(motion)
    assert spec.parts == (Part("arkit", "blendshape", 52),) and not spec.is_smplx
    feats = spec.encode(motion)
    np.testing.assert_array_equal(feats, motion.blocks["arkit"])
    back = spec.decode(feats, motion.fps)
    np.testing.assert_array_equal(back.blocks["arkit"], motion.blocks["arkit"])
    assert back.fps == motion.fps and back.has("arkit") and not back.has("expression")
    assert spec.channel_mask(back.parts).all()


def test_livelink_reader_errors(tmp_path):
    need_data(LIVELINK)
    lines = LIVELINK.read_text().splitlines()
    header = lines[0].split(",")
    cut = tmp_path / "no_jaw_open.csv"
    keep = [i for i, h in enumerate(header) if h != "JawOpen"]
    cut.write_text("\n".join(",".join(line.split(",")[i] for i in keep) for line in lines[:5]))
    with pytest.raises(CospeechError, match="no_jaw_open.csv: Live Link CSV lacks columns JawOpen$"):
        read_livelink_csv(cut)
    bad = tmp_path / "bad.csv"
    row = lines[1].split(",")
    row[header.index("MouthClose")] = "1.7"
    bad.write_text("\n".join([lines[0], ",".join(row)] + lines[2:4]))
    with pytest.raises(CospeechError, match=r"bad.csv: MouthClose leaves \[0, 1\]"):
        read_livelink_csv(bad)
    word = tmp_path / "word.csv"
    row[header.index("MouthClose")] = "open"
    word.write_text("\n".join([lines[0], ",".join(row)]))
    with pytest.raises(CospeechError, match="word.csv: row 2"):
        read_livelink_csv(word)


def test_arkit_face_metrics_on_the_real_take():
    need_data(LIVELINK)
    gt = read_livelink_csv(LIVELINK)
    same = arkit_face_metrics(gt, gt)
    assert same == {"LVE-ARKit": 0.0, "FDD-ARKit": 0.0, "FaceMSE": 0.0, "FaceLVD": 0.0}
    curves = gt.blocks["arkit"].copy()
    jaw = ARKIT_52.index("jawOpen")
    curves[:, jaw] = np.clip(curves[:, jaw] + 0.1, 0, 1)  # mouth a little more open, nothing else
    pred = BlockMotion(gt.fps, {"arkit": curves}, {"arkit": "blendshape"})
    err = (curves[:, jaw].astype(np.float64) - gt.blocks["arkit"][:, jaw]) ** 2
    m = arkit_face_metrics(pred, gt)
    assert m["LVE-ARKit"] == pytest.approx(err.mean(), rel=1e-6) and m["LVE-ARKit"] == pytest.approx(0.01, rel=1e-3)
    assert m["FDD-ARKit"] == 0.0  # the upper face did not change
    assert m["FaceMSE"] == pytest.approx(err.mean() / 52, rel=1e-6)
    with pytest.raises(CospeechError, match="no face \\('arkit'\\); ARKit face scoring needs one"):
        arkit_face_metrics(_beat2(10), gt)
