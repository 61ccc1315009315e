"""Metrics on constructed cases where the answer is known, the evaluator file, and the protocol."""

import json

import numpy as np
import pytest
from scipy import linalg

from cospeech.errors import CospeechError
from cospeech.metrics import (
    beat_align, feature_diversity, frechet_distance, frechet_distance_of, gaussian_stats, jerk, l1_diversity,
    lip_error, mse, upper_face_dynamics_deviation, velocity_difference,
)
from cospeech.metrics.kinematics import UPPER_BODY


def scipy_frechet(mu1, c1, mu2, c2):
    """The usual implementation (FID code): sqrtm of the product."""
    covmean = linalg.sqrtm(c1 @ c2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * np.trace(covmean.real))


def random_gaussian(rng, c):
    a = rng.normal(size=(c, c))
    return rng.normal(size=c), a @ a.T + 0.5 * np.eye(c)


def test_frechet_matches_scipy_on_known_gaussians(rng):
    for c in (1, 3, 16):
        mu1, c1 = random_gaussian(rng, c)
        mu2, c2 = random_gaussian(rng, c)
        assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(scipy_frechet(mu1, c1, mu2, c2), rel=1e-8)


def test_frechet_closed_forms():
    # diagonal covariances commute: FD = |Δμ|² + Σ (σ1 − σ2)²
    s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 0.0])
    expected = 5.0 + ((np.sqrt(s1) - np.sqrt(s2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, abs=1e-12)
    # a pure shift costs |Δμ|²
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s1)) == pytest.approx(5.0, abs=1e-10)


def test_frechet_stable_for_singular_covariances(rng):
    x = rng.normal(size=(5, 40))  # 5 samples in 40 dimensions: rank-4 covariances
    y = rng.normal(size=(6, 40)) + 0.3
    fd = frechet_distance_of(x, y)
    assert np.isfinite(fd) and fd > 0
    assert frechet_distance_of(x, x) == pytest.approx(0.0, abs=1e-8)
    assert fd == pytest.approx(frechet_distance_of(y, x), rel=1e-9)
    # rank-deficient but exactly known: the same singular covariance, shifted means
    mu, cov = gaussian_stats(x)
    assert frechet_distance(mu, cov, mu + 1.0, cov) == pytest.approx(40.0, rel=1e-8)


def beat_motion(fps=30.0, seconds=10.0, period=0.8, phase=0.4):
    """Upper-body joints moving along x with speed 1 + 0.5 cos(2π(t − phase)/period):
    speed minima (beats) at phase + period/2 + k·period."""
    t = np.arange(int(fps * seconds)) / fps
    w = 2 * np.pi / period
    x = t + 0.5 * np.sin(w * (t - phase)) / w
    pos = np.zeros((len(t), 55, 3))
    pos[:, list(UPPER_BODY), 0] = x[:, None]
    beats = phase + period / 2 + period * np.arange(int(seconds / period))
    return pos, beats[(beats > 0.5) & (beats < seconds - 0.5)]


def test_beat_align_maximal_when_motion_beats_sit_on_onsets():
    fps = 30.0
    pos, beats = beat_motion(fps)
    onsets = np.round(beats * fps) / fps  # on the frame grid
    assert beat_align(onsets, pos, fps) == pytest.approx(1.0, abs=1e-9)
    shifted = beat_align(onsets + 0.2, pos, fps)
    further = beat_align(onsets + 0.4, pos, fps)
    assert further < shifted < 1.0
    assert shifted == pytest.approx(np.exp(-(0.2**2) / (2 * 0.3**2)), abs=0.02)


def test_beat_align_of_a_frozen_pose_is_zero():
    pos = np.zeros((300, 55, 3))
    assert beat_align(np.array([1.0, 2.0]), pos, 30.0) == 0.0


def test_l1div_jerk_diversity_known_values():
    pos = np.zeros((4, 2, 3))
    pos[::2, :, 0] = 1.0  # alternating x = 1, 0: mean 0.5, |deviation| 0.5
    assert l1_diversity(pos) == pytest.approx(0.5)
    t = np.arange(50) / 10.0
    cubic = np.zeros((50, 1, 3))
    cubic[:, 0, 1] = t**3
    assert jerk(cubic, 10.0) == pytest.approx(6.0)
    assert feature_diversity(np.array([[0.0, 0.0], [3.0, 4.0]])) == pytest.approx(5.0)


def test_face_metrics_known_values():
    gt = np.zeros((10, 4, 3))
    pred = gt.copy()
    pred[3, 1] = [0.0, 2.0, 0.0]  # one lip vertex off by 2 in one frame
    assert lip_error(pred, gt, lips=[0, 1]) == pytest.approx(4.0 / 10)
    assert lip_error(pred, gt, lips=[2, 3]) == 0.0
    moving = np.zeros((10, 3))
    moving[::2] = 1.0
    assert upper_face_dynamics_deviation(moving, moving, upper=[0, 1, 2]) == 0.0
    assert upper_face_dynamics_deviation(np.zeros((10, 3)), moving, upper=[0, 1, 2]) == pytest.approx(0.5)
    assert mse(moving, np.zeros((10, 3))) == pytest.approx(0.5)
    assert velocity_difference(moving, moving) == 0.0
    assert velocity_difference(np.zeros((10, 3)), moving) == pytest.approx(1.0)  # coefficients are 1-D points
    ramp = np.ones((10, 2, 3)) * np.arange(10)[:, None, None]  # every vertex moves by (1, 1, 1) per frame
    assert velocity_difference(np.zeros((10, 2, 3)), ramp) == pytest.approx(np.sqrt(3.0))


@pytest.fixture(scope="module")
def evaluator(tmp_path_factory, cache_dir):
    from cospeech.data import load_cache
    from cospeech.metrics.evaluator import train_evaluator

    out = tmp_path_factory.mktemp("evaluator")
    return train_evaluator(load_cache(cache_dir), out, steps=60, progress=False), out


def test_evaluator_file_is_pinned_by_hash(evaluator, cache_dir):
    from cospeech.data import load_cache
    from cospeech.metrics.evaluator import MotionEvaluator

    ev, folder = evaluator
    again = MotionEvaluator.load(folder)
    assert again.hash == ev.hash and len(ev.hash) == 64
    assert ev.cfg.gesture_parts == ("body",)  # SHOW has no hand rotations: not evaluated
    take = load_cache(cache_dir).takes[0]
    f = again.features(take.motion)
    assert f["gesture"].shape == (len(range(0, take.n_frames - 31, 16)), 64) and f["motion"].shape[1] == 128
    np.testing.assert_allclose(f["gesture"], ev.features(take.motion)["gesture"])
    weights = folder / "evaluator.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(CospeechError, match="does not match"):
        MotionEvaluator.load(folder)


def test_evaluate_bundled_model_with_controls(tmp_path, data_dir, evaluator):
    from cospeech.cli.main import main

    ev, folder = evaluator
    folder = tmp_path / "ev"
    ev.save(folder)
    cache = tmp_path / "cache"
    split = tmp_path / "split.csv"
    split.write_text("id,type\noliver/216111-00_09_32-00_09_42,test\n")
    assert main(["prepare", "show", str(data_dir / "show"), "-o", str(cache), "--split-file", str(split)]) == 0
    out = tmp_path / "report.json"
    assert main(["evaluate", "bundled", "--data", str(cache), "--samples", "2", "--steps", "4",
                 "--evaluator", str(folder), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    res = report["results"]
    assert set(res) == {"model", "ground truth", "mean pose", "random real clip", "shuffled audio"}
    assert res["ground truth"]["FGD"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert res["mean pose"]["BeatAlign"]["mean"] == 0.0
    assert len(res["model"]["FGD"]["values"]) == 2 and res["model"]["FGD"]["mean"] > 0
    p = report["protocol"]
    assert p["extractor_sha256"] == ev.hash and p["split"] == "test" and p["samples"] == 2
    assert [t["id"] for t in p["takes"]] == ["oliver/216111-00_09_32-00_09_42"]
    assert len(report["protocol_sha256"]) == 64 and report["verdict"]
