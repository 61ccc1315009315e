"""The papers' presets on real data: the tiny ones learn one real window, train and generate through
the CLI into files the writers accept; `cospeech presets` and `benchmark --presets` report them."""

import json

import numpy as np
import pytest

from cospeech.cli.main import main
from cospeech.data import load_cache
from cospeech.models import build_denoiser
from cospeech.motion.bvh import read_bvh_smplx
from cospeech.train import train
from cospeech.train.loop import WindowSampler
from cospeech.train.presets import PRESETS, catalogue, denoiser_config

from .conftest import SPEECH
from .test_train import fixed_loss, windows_of

TINY = ("diffspeaker-tiny", "diffsheg-tiny")
STEPS = {"diffspeaker-tiny": 100, "diffsheg-tiny": 60}  # each falls about 9x in these (at least 5x asked)


@pytest.fixture(scope="module")
def cache(cache_dir):
    return load_cache(cache_dir)


@pytest.mark.slow  # 40-190 s each on the shared 2-core machine (per-op overhead, not the batch: batch 4 took as long)
@pytest.mark.parametrize("preset", TINY)
def test_loss_falls_fivefold_on_one_real_window(cache, tmp_path, preset):
    one = windows_of(cache, [600])
    initial = train(one, tmp_path / "r0", preset=preset, steps=1, progress=False)
    parts = PRESETS[preset].parts
    seen = one.with_parts(parts) if parts else one
    sampler = WindowSampler(seen, initial.motion_norm, initial.audio_norm, initial.cfg.speakers, 60, 60)
    before = fixed_loss(initial, sampler)
    trained = train(one, tmp_path / "r1", preset=preset, steps=STEPS[preset], checkpoint_every=1000,
                    progress=False)
    after = fixed_loss(trained, sampler)
    assert after < before / 5, (before, after)


@pytest.mark.parametrize("preset", TINY)
def test_trains_and_generates_through_the_cli(cache_dir, tmp_path, preset, capsys):
    run, out = tmp_path / "run", tmp_path / "out"
    assert main(["train", "--data", str(cache_dir), "-o", str(run), "--preset", preset, "--steps", "4"]) == 0
    wav = SPEECH / "arctic_a0009.wav"
    assert main(["generate", str(wav), "-m", str(run), "-o", str(out), "--steps", "3"]) == 0
    npz = np.load(out / "arctic_a0009.npz")
    poses = npz["poses"].reshape(len(npz["poses"]), -1, 3)  # (T, 55, 3)
    assert len(poses) == 93 and np.isfinite(poses).all()
    bvh = read_bvh_smplx(out / "arctic_a0009.bvh")
    assert bvh.n_frames == 93
    assert (out / "arctic_a0009.mp4").stat().st_size > 10_000
    jaw, body = poses[:, 22], poses[:, 1:22]
    assert np.abs(jaw).max() > 1e-4  # the face moves
    if PRESETS[preset].parts:  # face only: the body stands at rest, in the npz and the BVH alike
        assert np.array_equal(body, np.zeros_like(body))
        assert np.abs(bvh.poses[:, 1:22]).max() < 1e-4
        assert np.abs(npz["expressions"]).max() > 1e-4
        # evaluate measures a face-only model on the face: the face metrics, no gesture numbers of a body at rest
        capsys.readouterr()
        report_path = tmp_path / "face.json"
        assert main(["evaluate", str(run), "--data", str(cache_dir), "--split", "train", "--samples", "1",
                     "--json", str(report_path)]) == 0
        report = json.loads(report_path.read_text())
        assert set(report["metrics"]) == {"FED", "FaceMSE", "FaceLVD", "LVE-FLAME", "FDD-FLAME"}
        assert report["protocol"]["generated_parts"] == ["jaw", "expression"]
        truth, model = report["results"]["ground truth"], report["results"]["model"]
        assert truth["FaceMSE"]["mean"] == 0 and truth["FED"]["mean"] < 1e-6
        assert model["FaceMSE"]["mean"] > 0 and model["FED"]["mean"] > 1e-3
        assert set(report["verdict"]) == {f"{m} vs {c}" for m in ("FED", "FaceMSE")
                                          for c in ("random real clip", "shuffled audio")}
    else:
        assert np.abs(body).max() > 1e-3


def test_presets_command_lists_every_preset_with_its_parameter_count(capsys):
    assert main(["presets", "--json"]) == 0
    rows = {r["preset"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(PRESETS)
    for name in ("tiny", "diffspeaker-tiny", "diffsheg-tiny"):
        assert rows[name]["params"] == sum(p.numel() for p in build_denoiser(denoiser_config(name)).parameters())
    assert rows["diffsheg"]["paper"].startswith("DiffSHEG") and rows["diffspeaker"]["paper"].startswith("DiffSpeaker")
    assert (rows["diffsheg"]["width"], rows["diffsheg"]["depth"], rows["diffsheg"]["heads"]) == (512, 8, 8)
    assert (rows["diffsheg"]["prediction"], rows["diffsheg"]["sample_steps"]) == ("epsilon", 25)
    assert (rows["diffspeaker"]["prediction"], rows["diffspeaker"]["sample_steps"]) == ("sample", 50)
    assert rows["diffspeaker"]["motion"] == "106 channels (jaw, expression)"
    assert 50e6 < rows["diffsheg"]["params"] < 80e6  # two 8-layer branches of width 512 and the speech encoder
    assert main(["presets"]) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in PRESETS) and "65.97 M" in text


def test_catalogue_counts_the_face_only_model_on_face_channels():
    rows = {r["preset"]: r for r in catalogue()}
    den = denoiser_config("diffspeaker-tiny")
    assert den.motion_dim == 106 and den.motion_parts == {"jaw": 6, "expression": 100}
    assert rows["diffspeaker-tiny"]["params"] == sum(p.numel() for p in build_denoiser(den).parameters())


@pytest.mark.slow
def test_benchmark_presets_reports_each_row(capsys):
    args = ["benchmark", "--presets", "diffspeaker-tiny,diffsheg-tiny", "--reps", "1", "--seconds", "2",
            "--dtypes", "float32", "--joiners", "fused,foppas"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in report["results"]}
    assert set(rows) == set(TINY)
    for name, r in rows.items():
        assert r["params"] == sum(p.numel() for p in build_denoiser(denoiser_config(name)).parameters())
        assert r["train"]["step_s"] > 0 and r["train"]["batch"] == PRESETS[name].train.batch_size
        assert [(g["joiner"], g["frames"]) for g in r["generate"]] == [("fused", 60), ("foppas", 60)]
        assert all(g["frames_per_s"] == pytest.approx(60 / g["seconds"], rel=0.02) for g in r["generate"])


def test_benchmark_presets_unknown_name_is_one_line_error(capsys):
    assert main(["benchmark", "--presets", "diffshag"]) == 1
    assert "unknown preset 'diffshag'" in capsys.readouterr().err
