"""Left-right mirroring of motion features (`motion.mirror`), checked against axis-angle's own
mirror formula and against forward kinematics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cospeech.errors import CospeechError
from cospeech.motion import ARKIT_52, SMPLX_JOINTS, MotionSpec, Part, smplx_flame_spec
from cospeech.motion.mirror import mirror, mirror_map
from cospeech.motion.rotations import axis_angle_to_rot6d, rot6d_to_axis_angle


def _features(rng, spec, t=5):
    """Random SMPL-X features: axis-angle poses encoded as 6D, plus plain channels."""
    aa = rng.normal(0, 0.6, (t, 55, 3)).astype(np.float32)
    x = rng.normal(0, 1, (t, spec.dim)).astype(np.float32)
    for part, sl in zip(spec.parts, spec.slices().values()):
        if part.kind == "rot6d":
            x[:, sl] = axis_angle_to_rot6d(torch.from_numpy(aa[:, list(part.joints)])).reshape(t, -1).numpy()
    return x, aa


def test_mirrored_rotations_are_the_mirror_joints_axis_angle_with_y_and_z_negated(rng):
    spec = smplx_flame_spec()
    x, aa = _features(rng, spec)
    m = mirror(spec, x)
    sl = spec.slices()
    for name in ("root_orient", "body", "jaw", "eyes", "hands"):
        part = next(p for p in spec.parts if p.name == name)
        got = rot6d_to_axis_angle(torch.from_numpy(m[:, sl[name]].reshape(len(m), -1, 6))).numpy()
        for k, j in enumerate(part.joints):
            src = SMPLX_JOINTS[j].replace("left", "@").replace("right", "left").replace("@", "right")
            want = aa[:, SMPLX_JOINTS.index(src)] * np.array([1, -1, -1], np.float32)  # S R S: (x, -y, -z)
            np.testing.assert_allclose(got[:, k], want, atol=2e-4)
    root = sl["root_vel"]
    np.testing.assert_array_equal(m[:, root], x[:, root] * np.array([-1, 1, 1], np.float32))
    expr = sl["expression"]
    np.testing.assert_array_equal(m[:, expr], x[:, expr])  # FLAME's basis has no mirror map: kept
    pca = sl["hands_pca"]
    half = (pca.stop - pca.start) // 2
    np.testing.assert_array_equal(m[:, pca.start:pca.start + half], x[:, pca.start + half:pca.stop])


def test_mirroring_twice_is_the_identity_and_moves_the_body_to_its_mirror_image(rng):
    from cospeech.motion import joint_positions, smplx_skeleton

    spec = smplx_flame_spec()
    x, _ = _features(rng, spec, t=3)
    np.testing.assert_allclose(mirror(spec, mirror(spec, x)), x, atol=1e-7)
    sk = smplx_skeleton()
    rest = sk.rest_positions()
    swap = [SMPLX_JOINTS.index(n.replace("left", "@").replace("right", "left").replace("@", "right")) for n in SMPLX_JOINTS]
    if not np.allclose(rest[swap] * [-1, 1, 1], rest, atol=1e-6):
        pytest.skip("the authored rest skeleton is not left-right symmetric")
    a, b = (spec.decode(f, 30) for f in (x, mirror(spec, x)))
    pa, pb = joint_positions(a.poses, a.trans, sk), joint_positions(b.poses, b.trans, sk)
    np.testing.assert_allclose(pb[:, swap] * [-1, 1, 1], pa, atol=1e-4)


def test_arkit_shapes_swap_sides_and_a_split_joint_pair_is_refused():
    spec = MotionSpec((Part("arkit", "blendshape", 52),))
    perm, sign = mirror_map(spec)
    assert ARKIT_52[perm[ARKIT_52.index("eyeBlinkLeft")]] == "eyeBlinkRight"
    assert ARKIT_52[perm[ARKIT_52.index("mouthLeft")]] == "mouthRight"
    assert ARKIT_52[perm[ARKIT_52.index("jawOpen")]] == "jawOpen" and (sign == 1).all()
    lonely = MotionSpec((Part("left_arm", "rot6d", 6, (SMPLX_JOINTS.index("left_elbow"),)),))
    with pytest.raises(CospeechError, match="right_elbow in another part"):
        mirror_map(lonely)


def test_training_windows_past_the_last_are_the_mirror_images_of_the_first(cache_dir):
    from cospeech.data import load_cache
    from cospeech.train.loop import WindowSampler

    cache = load_cache(cache_dir)
    norm = cache.spec.fit_normalizer([t.motion for t in cache.takes], [t.mask for t in cache.takes])
    audio_norm = norm.__class__(np.zeros(cache.audio_cfg.dim, np.float32), np.ones(cache.audio_cfg.dim, np.float32))
    speakers = tuple(cache.speakers)
    plain = WindowSampler(cache, norm, audio_norm, speakers, 60, 10)
    both = WindowSampler(cache, norm, audio_norm, speakers, 60, 10, mirror=True)
    n = len(plain.rows)
    g = torch.Generator().manual_seed(0)
    assert both.draw(4000, g).max() >= n > plain.draw(4000, g).max()  # both halves are drawn
    pick = np.array([0, n - 1])
    x_plain, cond_plain, _, channels = plain.build(pick)
    x_mirror, cond_mirror, _, channels_m = both.build(pick + n)
    take, start = plain.rows[0]
    want = norm.normalize(mirror(cache.spec, cache.takes[take].motion[start:start + 60]))
    np.testing.assert_allclose(x_mirror[0].numpy(), np.where(cache.takes[take].mask, want, 0.0), atol=1e-5)
    assert not torch.allclose(x_mirror, x_plain)
    torch.testing.assert_close(cond_mirror.audio, cond_plain.audio)  # the same speech
    torch.testing.assert_close(channels_m, channels)
    torch.testing.assert_close(both.build(pick)[0], x_plain)  # the first half is the data as recorded
