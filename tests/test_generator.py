"""The Python API a user calls, and model files that describe themselves."""

import json

import numpy as np
import pytest

import cospeech
from cospeech.cli.main import main
from cospeech.errors import CospeechError
from cospeech.generator import MotionGenerator, bundled_model_path


def test_bundled_model_is_small_and_self_describing():
    folder = bundled_model_path()
    assert (folder / "model.safetensors").stat().st_size <= 15 * 2**20
    meta = json.loads((folder / "model.json").read_text())
    assert {"config", "motion_norm", "audio_norm", "info"} <= set(meta)
    assert meta["info"]["training"]["step"] > 0 and meta["info"]["versions"]["cospeech"]
    assert (folder / "MODEL_CARD.md").exists()


def test_python_api_generate(model, speech):
    wave, sr = speech
    motion = model.generate(wave, sr, seed=0, steps=5)
    assert motion.n_frames == round(len(wave) / sr * model.cfg.fps)
    assert motion.poses.shape == (motion.n_frames, 55, 3) and np.isfinite(motion.poses).all()
    # any sample rate and stereo-mixed input: resampled inside
    import soxr

    motion44 = model.generate(soxr.resample(wave, sr, 44100), 44100, seed=0, steps=5)
    assert abs(motion44.n_frames - motion.n_frames) <= 1


def test_same_seed_same_motion(model, speech):
    wave, sr = speech
    a = model.generate(wave, sr, seed=7, steps=5)
    b = model.generate(wave, sr, seed=7, steps=5)
    c = model.generate(wave, sr, seed=8, steps=5)
    np.testing.assert_array_equal(a.poses, b.poses)
    np.testing.assert_array_equal(a.expressions, b.expressions)
    assert np.abs(a.poses - c.poses).mean() > 1e-4


def test_save_load_round_trip(model, speech, tmp_path):
    wave, sr = speech
    model.save(tmp_path / "copy")
    again = MotionGenerator.load(tmp_path / "copy")
    a = model.generate(wave, sr, seed=3, steps=4)
    b = again.generate(wave, sr, seed=3, steps=4)
    np.testing.assert_allclose(a.poses, b.poses, atol=1e-5)
    assert cospeech.load_model(tmp_path / "copy" / "model.safetensors").cfg == again.cfg


def test_python_api_errors(model, tmp_path):
    with pytest.raises(CospeechError, match="silent"):
        model.generate(np.zeros(16000, np.float32), 16000)
    with pytest.raises(CospeechError, match="mono"):
        model.generate(np.zeros((16000, 2), np.float32), 16000)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.json").write_text("{not json")
    with pytest.raises(CospeechError, match="cannot read model config"):
        cospeech.load_model(tmp_path / "broken")


def test_prepare_train_generate_via_cli(tmp_path, data_dir, capsys):
    """The user's day on the real clips, through the same entry point (tiny sizes)."""
    cache, run, out = tmp_path / "cache", tmp_path / "run", tmp_path / "out"
    assert main(["prepare", "show", str(data_dir / "show"), "-o", str(cache), "--window", "60"]) == 0
    assert main(["train", "--data", str(cache), "-o", str(run), "--preset", "tiny", "--steps", "30"]) == 0
    assert main(["train", "--data", str(cache), "-o", str(run), "--steps", "40", "--resume"]) == 0
    assert "trained to step 40" in capsys.readouterr().out
    clip = sorted((data_dir / "show").glob("*/*.wav"))[0]
    assert main(["generate", str(clip), "-m", str(run), "-o", str(out), "--formats", "npz", "--speaker", "conan"]) == 0
    with np.load(out / f"{clip.stem}.npz") as d:
        assert d["poses"].shape == (300, 165)
