"""Generation as one library call: options checked before any work, formats from the registry,
the sampler's per-step hook, long inputs in bounded segments, and any device."""

import ast
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import cospeech
from cospeech import generator as generator_module
from cospeech.cli.main import build_parser, example_speech, main
from cospeech.diffusion import CLEAN, DiffusionConfig, noise_to, sample, sample_scheduler, train_scheduler
from cospeech.errors import CospeechError
from cospeech.export import EXPORTERS, export, parse_formats
from cospeech.generator import GeneratorConfig, SampleOptions, bundled_model_path
from cospeech.models import Condition
from cospeech.pipeline import generate_files

from .conftest import BEAT2, need_data

SRC = Path(cospeech.__file__).parent


# -- options ---------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [
    dict(steps=0), dict(steps=-3), dict(steps=2.5), dict(steps=True), dict(guidance=math.nan),
    dict(guidance=math.inf), dict(guidance=-math.inf), dict(seed=-1), dict(seed=2**64), dict(seed=2**70),
    dict(seed=1.5), dict(sampler="euler"), dict(dtype="float8"), dict(device="tpu"), dict(style=(0.0, math.nan)),
])
def test_bad_sample_options_are_one_line_errors(bad):
    with pytest.raises(CospeechError) as err:
        SampleOptions(**bad)
    assert "\n" not in str(err.value)


def test_options_the_model_cannot_honour_fail_before_work(model, speech):
    with pytest.raises(CospeechError, match="training steps"):
        model.generate(*speech, steps=model.cfg.diffusion.train_steps + 1)
    with pytest.raises(CospeechError, match="no style vector"):
        model.generate(*speech, style=(0.1, 0.2))
    if not torch.cuda.is_available():
        with pytest.raises(CospeechError, match="no CUDA"):
            SampleOptions(device="cuda")


def test_largest_seed_runs_and_is_deterministic(model, speech):
    a = model.generate(*speech, seed=2**64 - 1, steps=2)
    b = model.generate(*speech, SampleOptions(seed=2**64 - 1, steps=2))
    assert np.array_equal(a.poses, b.poses)


def test_steps_reach_the_network(model, speech):
    """The caller's step count is the number of network passes (one window: one pass per step)."""
    calls = []
    real = model.denoiser.forward

    def counting(*args, **kw):
        calls.append(int(args[1][0]))
        return real(*args, **kw)

    model.denoiser.forward = counting
    try:
        for steps in (1, 3, 7):
            calls.clear()
            model.generate(*speech, steps=steps)
            assert len(calls) == steps
            sched = sample_scheduler(model.cfg.diffusion)
            sched.set_timesteps(steps)
            assert calls == [int(t) for t in sched.timesteps]
    finally:
        del model.denoiser.forward


@pytest.mark.parametrize("args,message", [
    (["--guidance", "nan"], "guidance"), (["--guidance", "inf"], "guidance"), (["--steps", "0"], "steps"),
    (["--seed", str(2**70)], "seed"), (["--seed", "-1"], "seed"), (["--device", "tpu"], "device"),
    (["--formats", "npz,fbx"], "fbx"), (["--formats", ","], "format"),
])
def test_cli_rejects_bad_options_without_writing(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert main(["generate", "--example", "-o", str(out), *args]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cospeech: error:") and "\n" not in err and message in err
    assert not out.exists() or not any(out.iterdir())


def test_output_path_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("keep me")
    assert main(["generate", "--example", "-o", str(target), "--steps", "2"]) == 1
    err = capsys.readouterr().err.strip()
    assert "existing file" in err and "\n" not in err
    assert target.read_text() == "keep me"


def test_a_failed_write_does_not_stop_the_batch(tmp_path, capsys):
    """One input's npz cannot be written (a folder holds its name): it is reported, the other is written."""
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    shutil.copy(example_speech(), a)
    shutil.copy(example_speech(), b)
    out = tmp_path / "out"
    (out / "a.npz").mkdir(parents=True)
    assert main(["generate", str(a), str(b), "-o", str(out), "--steps", "2", "--formats", "npz"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "a.npz" in err and "cannot write" in err
    assert (out / "b.npz").is_file() and (out / "a.npz").is_dir()


def test_non_finite_motion_is_never_written(tmp_path, model, capsys):
    """A model whose weights hold NaN produces NaN motion: an error naming the input, no file."""
    broken = cospeech.load_model()
    with torch.no_grad():
        for p in broken.denoiser.parameters():
            p.fill_(math.nan)
    report = generate_files(broken, [example_speech()], tmp_path, ("npz", "bvh"), SampleOptions(steps=2),
                            error=lambda m: None)
    assert len(report.errors) == 1 and "non-finite" in report.errors[0] and example_speech().name in report.errors[0]
    assert list(tmp_path.iterdir()) == []


# -- the registry ----------------------------------------------------------------------------
def test_formats_come_from_the_registry(capsys):
    assert parse_formats("npz, bvh,npz") == ("npz", "bvh")
    with pytest.raises(CospeechError, match="choose from npz, bvh, mp4"):
        parse_formats("gif")
    help_text = build_parser()._subparsers._group_actions[0].choices["generate"].format_help()
    for name in EXPORTERS:
        assert f"{name}:" in help_text


def test_a_face_only_motion_writes_its_body_at_rest(tmp_path, model, speech):
    """An SMPL-X motion of the face alone (a DiffSpeaker model's: its body decodes to the rest
    pose) is written, body at rest and jaw as generated, where it used to be refused; motion that
    is not SMPL-X and has no body still is (test_export_cli, test_kinds)."""
    from cospeech.motion.bvh import read_bvh_smplx

    motion = model.generate(*speech, steps=2)
    jaw = 22
    poses = np.zeros_like(motion.poses)
    poses[:, jaw] = motion.poses[:, jaw]
    face_only = type(motion)(poses, motion.trans, motion.expressions, motion.fps, parts=frozenset({"expression", "jaw"}))
    export(face_only, ("npz", "bvh"), tmp_path, "x")
    back = read_bvh_smplx(tmp_path / "x.bvh")
    assert np.abs(back.poses[:, [j for j in range(55) if j != jaw]]).max() < 1e-6  # the body at rest
    np.testing.assert_allclose(back.poses[:, jaw], motion.poses[:, jaw], atol=1e-4)
    assert np.ptp(motion.poses[:, jaw]) > 1e-3  # the jaw moves: the check is not passed by a still face


def test_library_call_matches_the_cli(tmp_path, model):
    report = generate_files(model, [example_speech()], tmp_path / "lib", "npz", SampleOptions(seed=5, steps=3),
                            log=lambda m: None)
    assert report.ok and [p.name for p in report.written[example_speech()]] == ["arctic_a0007.npz"]
    assert main(["generate", "--example", "-o", str(tmp_path / "cli"), "--seed", "5", "--steps", "3",
                 "--formats", "npz"]) == 0
    with np.load(tmp_path / "lib" / "arctic_a0007.npz") as a, np.load(tmp_path / "cli" / "arctic_a0007.npz") as b:
        assert np.array_equal(a["poses"], b["poses"]) and np.array_equal(a["trans"], b["trans"])


# -- the sampler's hook ----------------------------------------------------------------------
class _Zero(torch.nn.Module):
    def forward(self, x, t, cond, mask):
        return torch.zeros_like(x)


def test_hook_sees_every_noise_level_in_order():
    cfg = DiffusionConfig(prediction="sample", sample_steps=6)
    seen = []

    def hook(x, t, i):
        seen.append((i, t))
        return x

    cond = Condition(torch.zeros(2, 8, 3), torch.zeros(2, dtype=torch.long))
    sample(_Zero(), cond, (2, 8, 4), cfg, torch.Generator().manual_seed(0), hook=hook)
    sched = sample_scheduler(cfg)
    sched.set_timesteps(6)
    ts = [int(t) for t in sched.timesteps]
    assert seen == list(enumerate(ts + [CLEAN]))


def test_hook_can_pin_frames_to_known_values():
    """Re-imposing known frames at the matching noise level (out-painting) ends on them exactly,
    and the first step's input equals the forward process applied to them."""
    cfg = DiffusionConfig(prediction="sample", sample_steps=5)
    known = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(1, 8, 4, generator=torch.Generator().manual_seed(2))

    def hook(x, t, i):
        x = x.clone()
        x[0, :3] = noise_to(known, noise[0, :3], t, cfg)
        return x

    cond = Condition(torch.zeros(1, 8, 3), torch.zeros(1, dtype=torch.long))
    out = sample(_Zero(), cond, (1, 8, 4), cfg, torch.Generator().manual_seed(0), noise=noise, hook=hook)
    assert torch.equal(out[0, :3], known)
    t = 500
    expected = train_scheduler(cfg).add_noise(known, noise[0, :3], torch.tensor([t]))
    assert torch.allclose(noise_to(known, noise[0, :3], t, cfg), expected, atol=1e-6)
    assert torch.equal(noise_to(known, noise[0, :3], CLEAN, cfg), known)


# -- long inputs in bounded segments ---------------------------------------------------------
@pytest.fixture
def sampled_rows(monkeypatch) -> list[int]:
    """The number of windows in each call of the sampler made by the generator, in order."""
    rows = []
    real_sample = generator_module.sample

    def spy(net, cond, shape, *a, **kw):
        rows.append(shape[0])
        return real_sample(net, cond, shape, *a, **kw)

    monkeypatch.setattr(generator_module, "sample", spy)
    return rows


def test_long_input_is_sampled_in_bounded_segments(model, monkeypatch, sampled_rows):
    """With segments of 3 windows, every network batch holds ≤ 3 windows, the segments join
    without a jump larger than the motion's own frame-to-frame changes, and the result is finite."""
    need_data()
    wave, sr = sf.read(BEAT2 / "wave16k" / "2_scott_0_2_2.wav", dtype="float32", frames=16000 * 20)
    feats = model.audio_features(wave, sr)
    monkeypatch.setattr(generator_module, "SEGMENT_WINDOWS", 3)
    out = model.sample_features(feats, seed=0, steps=4)
    assert out.shape == (len(feats), model.cfg.spec.dim) and np.isfinite(out).all()
    assert len(sampled_rows) >= 2 and max(sampled_rows) <= 3
    # where segments join (first frame after each held overlap), the step is ordinary
    w, o = model.cfg.window, model.cfg.overlap
    seg_len = w + 2 * (w - o)
    step = np.abs(np.diff(model.motion_norm.normalize(out), axis=0)).mean(axis=1)  # (T - 1,)
    joins = [seg_len - 1 + k * (seg_len - o) for k in range(len(sampled_rows) - 1)]
    assert all(step[j] < np.percentile(step, 99) * 2 for j in joins if j < len(step))


def test_inputs_within_one_segment_are_unchanged_by_the_segment_size(model, speech, monkeypatch):
    feats = model.audio_features(*speech)
    a = model.sample_features(feats, seed=1, steps=3)
    monkeypatch.setattr(generator_module, "SEGMENT_WINDOWS", 1000)
    assert np.array_equal(a, model.sample_features(feats, seed=1, steps=3))


# -- files and configs -----------------------------------------------------------------------
def test_newer_model_format_and_unknown_settings_are_named(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(bundled_model_path(), folder)
    meta = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(CospeechError, match="newer cospeech"):
        cospeech.load_model(folder)
    meta["config"]["diffusion"]["schedule_shift"] = 1.0
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CospeechError, match="schedule_shift"):
        cospeech.load_model(folder)
    with pytest.raises(CospeechError, match="colour"):
        GeneratorConfig.from_dict({**json.loads((bundled_model_path() / "model.json").read_text())["config"], "colour": 1})
    del meta["config"]["diffusion"]["schedule_shift"]
    (folder / "model.json").write_text(json.dumps(meta))
    (folder / "model.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(CospeechError, match="cannot read weights"):
        cospeech.load_model(folder)


def test_no_module_imports_the_package_init():
    """`from . import x` / `from .. import x` of the package root would tie every module to
    `cospeech/__init__` (and its import order); the version lives in `_version`."""
    offenders = []
    for path in SRC.rglob("*.py"):
        depth = len(path.relative_to(SRC).parts) - 1  # 0 for cospeech/x.py
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module is None and node.level == depth + 1 and depth >= 0:
                if path.name != "__init__.py" or depth > 0:
                    offenders.append(str(path.relative_to(SRC)))
    assert offenders == []


def test_foppas_joiner_denoises_one_window_after_another(model, sampled_rows):
    """Out-painting: every network batch is one window, each emitting window - overlap new
    frames, and the motion is finite; unknown joiners are refused."""
    need_data()
    wave, sr = sf.read(BEAT2 / "wave16k" / "2_scott_0_2_2.wav", dtype="float32", frames=16000 * 10)
    feats = model.audio_features(wave, sr)
    out = model.sample_features(feats, seed=0, steps=3, joiner="foppas")
    stride = model.cfg.window - model.cfg.overlap
    assert sampled_rows == [1] * -(-len(feats) // stride)
    assert np.isfinite(out).all() and out.shape == (len(feats), model.cfg.spec.dim)
    with pytest.raises(CospeechError, match="joiner"):
        SampleOptions(joiner="stitch")
