"""Metrics on constructed cases where the answer is known, the evaluator file, and the protocol."""

import json

import numpy as np
import pytest
import torch
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
    assert report["run"]["model"]["sha256"] and report["run"]["data_hash"]  # what was measured: beside the protocol
    assert not {"model", "data_hash", "cospeech"} & set(p)


def test_protocol_hash_names_the_protocol_not_the_model(evaluator, cache_dir):
    """Two models measured the same way share a protocol hash; any change of how they are measured changes it."""
    from cospeech.data import load_cache
    from cospeech.generator import load_model
    from cospeech.metrics.evaluate import evaluation_protocol, evaluation_takes, protocol_hash

    ev, _ = evaluator
    cache = load_cache(cache_dir)
    takes, short = evaluation_takes(cache, "train", ev.cfg.window)
    bundled = load_model()
    other = load_model()
    with torch.no_grad():
        for v in other.denoiser.parameters():
            v.add_(1.0)

    def digest(model, **kw):
        args = dict(split="train", samples=3, seed=0, steps=None) | kw
        return protocol_hash(evaluation_protocol(model, ev, takes, short, **args))

    assert digest(bundled) == digest(other)
    assert len({digest(bundled), digest(bundled, samples=2), digest(bundled, seed=1), digest(bundled, steps=5),
                protocol_hash(evaluation_protocol(bundled, ev, takes[1:], short, "train", 3, 0, None))}) == 5


def results_of(**beat_align):
    """A results dict: FGD/FMD lower for the model, BeatAlign means as given per system."""
    fgd = {"model": 1.0, "ground truth": 0.0, "random real clip": 2.0, "shuffled audio": 3.0}
    return {s: {"FGD": {"mean": fgd[s]}, "FMD": {"mean": fgd[s]}, "BeatAlign": {"mean": beat_align[s.replace(" ", "_")]}}
            for s in fgd}


def test_verdict_counts_beat_align_nearer_the_ground_truth_as_better():
    from cospeech.metrics.evaluate import verdict

    # jittery model motion scores above the ground truth: not a win over controls nearer the truth
    v = verdict(results_of(model=0.84, ground_truth=0.43, random_real_clip=0.57, shuffled_audio=0.2))
    assert not v["BeatAlign vs random real clip"]["model_better"]  # 0.41 from the truth vs 0.14
    assert not v["BeatAlign vs shuffled audio"]["model_better"]  # 0.41 vs 0.23
    assert v["FGD vs shuffled audio"]["model_better"] and v["FMD vs random real clip"]["model_better"]
    v = verdict(results_of(model=0.5, ground_truth=0.43, random_real_clip=0.57, shuffled_audio=0.2))
    assert v["BeatAlign vs random real clip"]["model_better"] and v["BeatAlign vs shuffled audio"]["model_better"]


def test_evaluate_without_the_split_names_the_splits_there_are(cache_dir, capsys):
    from cospeech.cli.main import main

    assert main(["evaluate", "bundled", "--data", str(cache_dir), "--split", "test"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("cospeech: error:"), err
    assert str(cache_dir) in err and "no 'test' takes" in err and "7 train" in err, err


def test_the_evaluator_reads_its_parts_from_any_spec_that_holds_them():
    """The bundled evaluator (trained with a velocity root) gives the same features for a real take
    encoded with the anchored root: it reads body, jaw and expression only; a spec without one fails."""
    from cospeech.metrics.evaluator import MotionEvaluator, bundled_evaluator_path
    from cospeech.motion import MotionSpec, smplx_flame_spec

    from .conftest import BEAT2, BEAT2_TAKE, need_data

    need_data(BEAT2)
    from cospeech.data import beat2

    motion = beat2.load_motion(next(t for t in beat2.takes(BEAT2) if t.id == BEAT2_TAKE)).crop(0, 200)
    ev = MotionEvaluator.load(bundled_evaluator_path())
    old, new = smplx_flame_spec("velocity"), smplx_flame_spec("anchored")
    assert ev.spec == old
    a = ev.features(old.encode(motion))
    b = ev.features(new.encode(motion), spec=new)
    for k in ("gesture", "face", "motion"):
        np.testing.assert_array_equal(a[k], b[k])
    assert a["gesture"].shape == (11, 64) and np.abs(a["gesture"]).sum() > 1
    no_jaw = MotionSpec(tuple(p for p in new.parts if p.name != "jaw"))
    with pytest.raises(CospeechError, match="'jaw'.*lacks"):
        ev.features(no_jaw.encode(motion), spec=no_jaw)
