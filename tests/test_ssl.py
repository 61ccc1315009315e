"""SSL speech encoders, the DiffMotion-v2 and DiM-Gestor presets, and style from a reference recording.

The encoders are tiny random-initialised configurations of the real `transformers` classes,
saved to a folder and loaded back through the code a user runs (`--audio-encoder KIND=DIR`).
"""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from cospeech.audio import load_audio
from cospeech.audio.extractors import build_extractor, describe, folder_sha256, ssl_encoder, stream_key
from cospeech.cli.main import example_speech, main
from cospeech.data import load_cache
from cospeech.diffusion import train_scheduler, training_loss
from cospeech.errors import CospeechError
from cospeech.generator import condition_features, load_model
from cospeech.models import Condition, DenoiserConfig, build_denoiser
from cospeech.motion import Normalizer
from cospeech.train import get_preset
from cospeech.train.loop import WindowSampler

from .conftest import BEAT2, BEAT2_TAKE, SHOW

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(32, 32, 32),
            conv_stride=(5, 8, 8), conv_kernel=(10, 8, 8), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


STEPS_FIVEFOLD = 30  # optimiser steps in which a -tiny preset's loss on one window must fall 5x


def save_tiny(kind: str, folder, seed: int = 0):
    """A random-initialised encoder of the real class, written as `save_pretrained` writes it."""
    import transformers as tf

    classes = {"wavlm": (tf.WavLMConfig, tf.WavLMModel), "hubert": (tf.HubertConfig, tf.HubertModel),
               "wav2vec2": (tf.Wav2Vec2Config, tf.Wav2Vec2Model)}
    config_cls, model_cls = classes[kind]
    extra = dict(num_buckets=32, max_bucket_distance=100) if kind == "wavlm" else {}
    torch.manual_seed(seed)
    model_cls(config_cls(**TINY, **extra)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def wavlm_dir(tmp_path_factory):
    return save_tiny("wavlm", tmp_path_factory.mktemp("wavlm") / "wavlm-tiny")


@pytest.fixture(scope="module")
def ssl_cache(tmp_path_factory, wavlm_dir, cache_dir):
    """The session's cache of SHOW (four speakers) + the BEAT2 take, with a WavLM stream added
    through the CLI (prepare computes only the new stream)."""
    out = tmp_path_factory.mktemp("ssl-cache") / "cache"
    shutil.copytree(cache_dir, out)
    for layout, src in (("show", SHOW), ("beat2", BEAT2)):
        assert main(["prepare", layout, str(src), "-o", str(out), "--window", "60", "--audio-encoder",
                     f"wavlm={wavlm_dir}"]) == 0
    return out


@pytest.fixture(scope="module")
def gestor_run(ssl_cache, wavlm_dir, tmp_path_factory):
    """A tiny DiM-Gestor trained briefly through the CLI."""
    run = tmp_path_factory.mktemp("gestor") / "run"
    assert main(["train", "--preset", "dim-gestor-tiny", "--data", str(ssl_cache), "-o", str(run), "--steps", "8",
                 "--batch-size", "4", "--audio-encoder", f"wavlm={wavlm_dir}"]) == 0
    return run


def last_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and lines[-1].startswith("cospeech: error: "), lines
    return lines[-1]


# -- encoders ---------------------------------------------------------------------------------
def test_missing_or_wrong_folder_is_one_line_naming_the_download(tmp_path, capsys):
    assert main(["prepare", "show", str(SHOW), "-o", str(tmp_path / "c"), "--audio-encoder", f"wavlm={tmp_path / 'none'}"]) == 1
    err = last_error(capsys)
    assert "no such wavlm folder" in err and "microsoft/wavlm-base-plus" in err and str(tmp_path / "none") in err
    (tmp_path / "empty").mkdir()
    with pytest.raises(CospeechError, match="no config.json, model.safetensors or pytorch_model.bin.*wavlm-base-plus"):
        ssl_encoder("wavlm", tmp_path / "empty")
    save_tiny("hubert", tmp_path / "hub")
    with pytest.raises(CospeechError, match="holds a 'hubert' model, not wavlm"):
        ssl_encoder("wavlm", tmp_path / "hub")
    assert main(["prepare", "show", str(tmp_path), "-o", str(tmp_path / "c"), "--audio-encoder", "wavlm"]) == 1
    assert "expected KIND=DIR" in last_error(capsys)


@pytest.mark.parametrize("kind", ["wavlm", "hubert", "wav2vec2"])
def test_encoder_features_are_the_models_hidden_states(kind, tmp_path):
    folder = save_tiny(kind, tmp_path / kind)
    enc = ssl_encoder(kind, folder)
    assert (enc.rate, enc.dim, enc.sample_rate) == (50.0, 32, 16000)
    wave = load_audio(example_speech(), 16000)[:16000]  # 1 s of real speech
    feats = enc(wave, 30.0, 30)  # (Ta, C)
    from transformers import AutoModel

    net = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    x = torch.from_numpy((wave - wave.mean()) / np.sqrt(wave.var() + 1e-7))[None]
    with torch.no_grad():
        want = net(x, output_hidden_states=True).hidden_states[-1][0].numpy()
    assert feats.shape == (49, 32) and np.allclose(feats, want, atol=1e-5)
    assert np.abs(feats).mean() > 0.1  # not a zero or constant stream
    rebuilt = build_extractor(json.loads(json.dumps(describe(enc))))  # as a cache index records it
    assert stream_key(rebuilt) == stream_key(enc) and np.allclose(rebuilt(wave, 30.0, 30), feats)


def test_folder_hash_is_of_the_weights(tmp_path):
    a = folder_sha256(save_tiny("wavlm", tmp_path / "a", seed=0))
    (tmp_path / "a" / ".cache").mkdir()
    (tmp_path / "a" / ".cache" / "download.lock").write_text("x")  # a download tool's bookkeeping
    assert folder_sha256(tmp_path / "a") == a == folder_sha256(save_tiny("wavlm", tmp_path / "b", seed=0))
    assert folder_sha256(save_tiny("wavlm", tmp_path / "c", seed=1)) != a


def test_cached_stream_is_averaged_onto_the_motion_grid(ssl_cache):
    cache = load_cache(ssl_cache)
    take = next(t for t in cache.takes if t.meta["id"] == BEAT2_TAKE)
    enc = {k: v for k, v in cache.streams["wavlm"].items() if k != "folder"}
    raw = take.streams["wavlm"]  # (Ta, 32) at 50 Hz
    feats = condition_features(cache, take, enc)  # (T, 80 + 32)
    assert feats.shape == (take.n_frames, take.audio.shape[1] + 32)
    assert np.array_equal(feats[:, :-32], take.audio)
    # motion frame 0 covers [0, 1/30) s: all of 50 Hz frame 0 and 2/3 of frame 1; frame 1 the rest of 1 and all of 2
    assert np.allclose(feats[0, -32:], 0.6 * raw[0] + 0.4 * raw[1], atol=1e-5)
    assert np.allclose(feats[1, -32:], 0.2 * raw[1] + 0.6 * raw[2] + 0.2 * raw[3], atol=1e-5)
    seg = cache.segment(take, 300, 400)  # a segment reads the frames of its own span
    assert np.allclose(condition_features(cache, seg, enc), feats[300:400], atol=1e-5)


# -- the denoiser options the presets use ------------------------------------------------------
@pytest.mark.parametrize("backbone", ["transformer", "mamba2"])
def test_causal_denoiser_output_at_t_ignores_later_frames(backbone):
    torch.manual_seed(0)
    mixer = {"d_state": 16, "head_dim": 16, "chunk": 16, "piece": 32} if backbone == "mamba2" else {}
    cfg = DenoiserConfig(motion_dim=6, audio_dim=5, n_speakers=2, backbone=backbone, width=32, depth=2, heads=4,
                         dropout=0.0, causal=True, x_skip=True, mixer=mixer)
    net = build_denoiser(cfg).eval()
    for p in net.parameters():  # zero-initialised gates would hide any leak
        torch.nn.init.normal_(p, std=0.2)
    x, audio, t, spk = torch.randn(2, 50, 6), torch.randn(2, 50, 5), torch.tensor([10, 500]), torch.tensor([0, 1])
    x2, audio2 = x.clone(), audio.clone()
    x2[:, 31:] += 1.0
    audio2[:, 31:] -= 2.0
    for grad in (True, False):  # the training path and the piecewise inference path
        with torch.set_grad_enabled(grad):
            y, y2 = net(x, t, Condition(audio, spk)), net(x2, t, Condition(audio2, spk))
        assert torch.equal(y[:, :31], y2[:, :31])
        assert (y[:, 31:] - y2[:, 31:]).abs().max() > 0.1
    with pytest.raises(CospeechError, match="cannot low-pass"):
        build_denoiser(replace(cfg, audio_smooth=5))


@pytest.mark.parametrize("preset", ["diffmotion-v2-tiny", "dim-gestor-tiny"])
def test_tiny_preset_loss_falls_fivefold_on_one_real_window(preset, ssl_cache):
    cache = load_cache(ssl_cache)
    enc = {k: v for k, v in cache.streams["wavlm"].items() if k != "folder"}
    take = next(t for t in cache.takes if t.meta["id"] == BEAT2_TAKE)
    one = replace(cache, takes=[cache.segment(take, 600, 660)], window=60, stride=60)
    motion_norm = cache.spec.fit_normalizer([t.motion for t in cache.takes], [t.mask for t in cache.takes])
    audio_norm = Normalizer.fit([condition_features(cache, t, enc) for t in cache.takes])
    sampler = WindowSampler(one, motion_norm, audio_norm, ("scott",), 60, 60, enc)
    x0, cond, frames, channels = sampler.batch(2, torch.Generator().manual_seed(0))
    p = get_preset(preset)
    torch.manual_seed(0)
    net = build_denoiser(DenoiserConfig(motion_dim=cache.spec.dim, audio_dim=cond.audio.shape[2],
                                        n_speakers=1, **p.denoiser))
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    scheduler = train_scheduler(p.diffusion)

    def loss():  # the preset's objective (ε-prediction) on fixed steps and noise
        return training_loss(net, x0, cond, p.diffusion, scheduler, torch.Generator().manual_seed(1), mask=frames,
                             channel_mask=channels)

    with torch.no_grad():
        first = float(loss())
    for _ in range(STEPS_FIVEFOLD):
        value = loss()
        opt.zero_grad()
        value.backward()
        opt.step()
    with torch.no_grad():
        last = float(loss())
    assert p.diffusion.prediction == "epsilon" and last < first / 5, (first, last)


# -- through the CLI ---------------------------------------------------------------------------
def test_gestor_trains_and_generates_through_the_cli_with_its_encoder(gestor_run, wavlm_dir, tmp_path, capsys):
    run_json = json.loads((gestor_run / "run.json").read_text())
    assert run_json["encoder"]["weights_sha256"] == folder_sha256(wavlm_dir)
    capsys.readouterr()
    assert main(["info", "-m", str(gestor_run)]) == 0
    info = capsys.readouterr().out
    assert "the mel path + wavlm" in info and "style: fuzzy extractor, 32-value" in info and folder_sha256(wavlm_dir) in info
    speech = str(example_speech())
    out = tmp_path / "out"
    assert main(["generate", speech, "-m", str(gestor_run), "-o", str(out), "--formats", "npz", "--steps", "4",
                 "--audio-encoder", f"wavlm={wavlm_dir}"]) == 0
    plain = np.load(out / "arctic_a0007.npz")["poses"]
    assert plain.shape[0] == 120 and np.isfinite(plain).all()
    ref = sorted(SHOW.glob("conan/*.wav"))[0]
    assert main(["generate", speech, "-m", str(gestor_run), "-o", str(tmp_path / "styled"), "--formats", "npz",
                 "--steps", "4", "--audio-encoder", f"wavlm={wavlm_dir}", "--style-from", str(ref)]) == 0
    styled = np.load(tmp_path / "styled" / "arctic_a0007.npz")["poses"]
    # the reference's style, not the speech's own, conditions it (same seed; a model of 8 steps moves a little)
    assert np.abs(styled - plain).max() > 1e-4
    capsys.readouterr()
    # without the weights, or with other weights: one line each, nothing written
    assert main(["generate", speech, "-m", str(gestor_run), "-o", str(tmp_path / "x"), "--formats", "npz"]) == 1
    assert "this model reads wavlm features: pass --audio-encoder wavlm=DIR" in last_error(capsys)
    other = save_tiny("wavlm", tmp_path / "other", seed=1)
    assert main(["generate", speech, "-m", str(gestor_run), "-o", str(tmp_path / "x"), "--formats", "npz",
                 "--audio-encoder", f"wavlm={other}"]) == 1
    assert "differ from those this model was trained with" in last_error(capsys)
    assert not (tmp_path / "x" / "arctic_a0007.npz").exists()


def test_diffmotion_trains_and_generates_through_the_cli(ssl_cache, wavlm_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--preset", "diffmotion-v2-tiny", "--data", str(ssl_cache), "-o", str(run), "--steps", "3"]) == 0
    assert "the mel path + wavlm" in capsys.readouterr().err  # the preset's kind, found in the cache
    gen = load_model(run, audio_encoder=f"wavlm={wavlm_dir}")
    assert gen.cfg.denoiser.causal and gen.cfg.diffusion.prediction == "epsilon" and gen.cfg.denoiser.audio_dim == 112
    assert main(["generate", str(example_speech()), "-m", str(run), "-o", str(tmp_path / "o"), "--formats", "npz",
                 "--steps", "3", "--audio-encoder", f"wavlm={wavlm_dir}"]) == 0
    assert np.isfinite(np.load(tmp_path / "o" / "arctic_a0007.npz")["poses"]).all()
    capsys.readouterr()
    assert main(["generate", str(example_speech()), "-m", str(run), "-o", str(tmp_path / "o"), "--style-from",
                 str(example_speech())]) == 1
    assert "--style-from: this model has no fuzzy style extractor" in last_error(capsys)


def test_without_ssl_weights_a_preset_falls_back_to_the_mel_path(cache_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--preset", "diffmotion-v2-tiny", "--data", str(cache_dir), "-o", str(run), "--steps", "2"]) == 0
    note = "the mel path (fallback) — preset diffmotion-v2-tiny wants wavlm features"
    assert note in capsys.readouterr().err and note in json.loads((run / "run.json").read_text())["speech_features"]
    assert main(["info", "-m", str(run)]) == 0
    assert note in capsys.readouterr().out
    gen = load_model(run)
    assert gen.cfg.encoder is None and gen.cfg.denoiser.audio_dim == 80
    assert main(["generate", "--example", "-m", str(run), "-o", str(tmp_path / "o"), "--formats", "npz", "--steps", "2",
                 "--audio-encoder", f"wavlm={save_tiny('wavlm', tmp_path / 'w')}"]) == 1
    assert "this model reads no SSL features" in last_error(capsys)


# -- style from a reference recording -----------------------------------------------------------
def halves_styles(gen, path, seconds=20):
    """The style vectors of the first and second half of a recording's first `seconds`."""
    wave = load_audio(path, 16000)[: seconds * 16000]
    half = len(wave) // 2
    return np.array(gen.style_from(wave[:half], 16000)), np.array(gen.style_from(wave[half:], 16000))


def test_style_vectors_of_speakers_differ_more_than_halves_of_one_take(gestor_run, wavlm_dir):
    gen = load_model(gestor_run, audio_encoder=f"wavlm={wavlm_dir}")
    takes = {p.parent.name: p for p in sorted(SHOW.glob("*/*.wav"))}  # one clip per speaker
    takes["scott"] = BEAT2 / "wave16k" / f"{BEAT2_TAKE}.wav"
    styles = {name: halves_styles(gen, path) for name, path in takes.items()}
    within = [np.linalg.norm(a - b) for a, b in styles.values()]
    between = [np.linalg.norm(styles[p][0] - styles[q][0]) for p in styles for q in styles if p < q]
    assert len(between) == 10 and np.mean(between) > 1.5 * np.mean(within), (within, between)
    with pytest.raises(CospeechError, match="style vector must have this model's 32 values"):
        gen.generate(load_audio(example_speech(), 16000), 16000, style=(0.0, 1.0), steps=2)

