"""The Mamba-2 backbone against the readable references of `models.ssd_reference` (the recurrence
and the all-chunks-at-once SSD): piecewise chunked scan, its recomputing backward, the streaming
step, the mixer's padding, piecewise inference, and the pipeline."""

import json

import numpy as np
import pytest
import torch

from cospeech.cli.main import main
from cospeech.errors import CospeechError
from cospeech.models import BACKBONES, DenoiserConfig, build_denoiser
from cospeech.models.mamba2 import Mamba2Mixer, Mamba2Options, ScanState, gated_rms_norm
from cospeech.models.ssd import ssd_scan, ssd_step
from cospeech.models.ssd_reference import segsum, ssd_minimal, ssd_recurrence
from cospeech.models.mamba2_ops import Sizes, conv_scan

from .test_diffusion import cond, tiny_model


def reference(x, dt, A, b, c, state=None):
    """`ssd_minimal` with a chunk length unrelated to the ones under test."""
    return ssd_minimal(x, dt, A, b, c, 5, state)


def scan_inputs(bsz=2, t=37, h=3, p=4, n=5, dtype=torch.float64, seed=0, state=True):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    x, b, c = r(bsz, t, h, p), r(bsz, t, n), r(bsz, t, n)
    dt = torch.nn.functional.softplus(r(bsz, t, h) - 1.0)
    A = -(0.5 + 3.0 * torch.rand(h, generator=g, dtype=dtype))
    s0 = r(bsz, h, p, n) if state else None
    return x, dt, A, b, c, s0


def test_segsum_by_hand():
    inf = float("inf")
    expected = torch.tensor([[0.0, -inf, -inf], [2.0, 0.0, -inf], [5.0, 3.0, 0.0]])
    torch.testing.assert_close(segsum(torch.tensor([1.0, 2.0, 3.0])), expected)


@pytest.mark.parametrize("chunk", [1, 4, 13, 64])
@pytest.mark.parametrize("t", [1, 13, 37])
def test_reference_ssd_matches_recurrence(chunk, t):
    x, dt, A, b, c, s0 = scan_inputs(t=t)
    y_ref, s_ref = ssd_recurrence(x, dt, A, b, c, s0)
    y, s = ssd_minimal(x, dt, A, b, c, chunk, s0)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(s, s_ref, rtol=1e-10, atol=1e-10)
    y0, _ = ssd_recurrence(x, dt, A, b, c)  # no state given: zeros
    torch.testing.assert_close(ssd_minimal(x, dt, A, b, c, chunk)[0], y0, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("chunk,piece", [(1, 1), (1, 3), (4, 8), (7, 7), (7, 21), (16, 64), (64, 256)])
@pytest.mark.parametrize("t", [1, 13, 37])
def test_chunked_scan_matches_reference(chunk, piece, t):
    x, dt, A, b, c, s0 = scan_inputs(t=t)
    y_ref, s_ref = reference(x, dt, A, b, c, s0)
    y, s = ssd_scan(x, dt, A, b, c, chunk, s0, piece)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(s, s_ref, rtol=1e-10, atol=1e-10)


def test_recurrent_step_matches_recurrence():
    x, dt, A, b, c, s0 = scan_inputs(t=21)
    y_ref, s_ref = ssd_recurrence(x, dt, A, b, c, s0)
    s, ys = s0, []
    for i in range(x.shape[1]):
        y, s = ssd_step(x[:, i], dt[:, i], A, b[:, i], c[:, i], s)
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys, 1), y_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(s, s_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("chunk,piece,t", [(4, 4, 11), (3, 6, 13), (16, 16, 7)])
def test_scan_backward_gradcheck(chunk, piece, t):
    """The custom backward (recomputed pieces, carried state gradient) in float64, including the
    gradients of the initial state and through the final state."""
    inputs = [v.requires_grad_() for v in scan_inputs(bsz=2, t=t, h=2, p=3, n=4)]

    def f(*args):
        y, s = ssd_scan(*args[:5], chunk, args[5], piece)
        return y, s

    assert torch.autograd.gradcheck(f, inputs)


@pytest.mark.parametrize("chunk,piece", [(8, 8), (8, 32), (25, 50)])
def test_scan_gradients_match_autograd_of_reference(chunk, piece):
    inputs = scan_inputs(bsz=2, t=70, h=4, p=8, n=6, seed=1)
    g = torch.Generator().manual_seed(5)
    wy, ws = torch.randn(2, 70, 4, 8, generator=g, dtype=torch.float64), torch.randn(2, 4, 8, 6, generator=g, dtype=torch.float64)

    def grads(fn):
        leaves = [v.clone().requires_grad_() for v in inputs]
        y, s = fn(*leaves)
        ((y * wy).sum() + (s * ws).sum()).backward()
        return [v.grad for v in leaves]

    ours = grads(lambda x, dt, A, b, c, s0: ssd_scan(x, dt, A, b, c, chunk, s0, piece))
    ref = grads(reference)
    for name, a, r in zip(["x", "dt", "A", "b", "c", "state"], ours, ref):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-9, msg=name)


def test_scan_float32_long_sequence_close_to_float64_reference():
    x, dt, A, b, c, _ = scan_inputs(bsz=1, t=300, h=2, p=8, n=8, state=False, seed=3)
    y_ref, _ = reference(x, dt, A, b, c)
    y, _ = ssd_scan(*(v.float() for v in (x, dt, A, b, c)), 64)
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-4, atol=1e-4)


def mixer(bidirectional=False, seed=0, **kw):
    torch.manual_seed(seed)
    opts = dict(d_state=8, head_dim=16, chunk=8, piece=16, bidirectional=bidirectional, kernel="torch") | kw
    return Mamba2Mixer(32, Mamba2Options(**opts))


def direction_inputs(t=29, seed=0):
    """Float64 inputs of one scan direction (E = 32, N = 8, C = 48, H = 2), with a padded row and
    non-zero incoming states."""
    g = torch.Generator().manual_seed(seed)
    keep = torch.ones(2, t, 1, dtype=torch.float64)
    keep[1, t - 6 :] = 0
    xbc = torch.randn(2, t, 48, generator=g, dtype=torch.float64) * keep
    dt = torch.randn(2, t, 2, generator=g, dtype=torch.float64)
    state = ScanState(torch.randn(2, 3, 48, generator=g, dtype=torch.float64),
                      torch.randn(2, 2, 16, 8, generator=g, dtype=torch.float64))
    return xbc, dt, keep, state


@pytest.mark.parametrize("chunk,piece,t", [(8, 16, 29), (5, 5, 3), (2, 6, 29), (64, 64, 29)])
def test_fused_direction_matches_composed_steps(chunk, piece, t):
    """conv + SiLU + SSD + skip fused piece by piece (`conv_scan`, own backward) against the same
    steps composed with autograd around `ssd_scan`: outputs, carried states and every gradient."""
    direction = mixer(chunk=chunk, piece=piece, expand=1).double().forward_scan
    inputs = direction_inputs(t)
    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(2, t, 32, generator=g, dtype=torch.float64), torch.randn(2, 3, 48, generator=g, dtype=torch.float64),
               torch.randn(2, 2, 16, 8, generator=g, dtype=torch.float64)]

    def run(fn):
        direction.zero_grad()
        xbc, dt, keep, state = inputs
        leaves = [v.clone().requires_grad_() for v in (xbc, dt, state.conv, state.ssm)]
        y, conv, ssm = fn(leaves[0], leaves[1], keep, ScanState(leaves[2], leaves[3]))
        outs = [y.flatten(-2), conv, ssm]
        sum((o * w).sum() for o, w in zip(outs, weights)).backward()
        return outs + [v.grad for v in leaves] + [p.grad.clone() for p in direction.parameters()]

    fused = run(lambda xbc, dt, keep, st: conv_scan(xbc, dt, keep, st.conv, st.ssm, direction.conv_weight,
                                                   direction.conv_bias, direction.dt_bias, direction.A_log,
                                                   direction.D, direction.sizes))
    composed = run(lambda xbc, dt, keep, st: direction.composed(xbc, dt, keep, st, ssd_scan))
    for i, (a, b) in enumerate(zip(fused, composed)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=f"output/gradient {i}")


def test_fused_direction_gradcheck():
    xbc, dt, keep, state = direction_inputs(t=7)
    direction = mixer(chunk=3, piece=6, expand=1).double().forward_scan
    params = [p.detach().clone().requires_grad_() for p in direction.parameters()]

    def f(xbc, dt, conv, ssm, *p):
        return conv_scan(xbc, dt, keep, conv, ssm, *p, Sizes(16, 8, 3, 6))

    args = [v.clone().requires_grad_() for v in (xbc, dt, state.conv, state.ssm)] + params
    assert torch.autograd.gradcheck(f, args)


def padded(t=50, real=37, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(2, t, 32, generator=g)
    mask = torch.ones(2, t, dtype=torch.bool)
    mask[1, real:] = False
    return u, mask


@pytest.mark.parametrize("bidirectional", [False, True])
def test_mixer_ignores_padding(bidirectional):
    m, (u, mask) = mixer(bidirectional), padded()
    y = m(u, mask)
    noisy = u.clone()
    noisy[1, 37:] = 50 * torch.randn(13, 32)
    torch.testing.assert_close(m(noisy, mask)[1, :37], y[1, :37], rtol=0, atol=0)
    alone = m(u[1:, :37])  # the same sequence without padding
    torch.testing.assert_close(alone[0], y[1, :37], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_piecewise_inference_matches_whole_sequence(bidirectional):
    m, (u, mask) = mixer(bidirectional), padded()
    y = m(u, mask)
    with torch.no_grad():
        pieces = list(m.chunks(lambda s, e: u[:, s:e], u.shape[1], mask))
    assert [(s, e) for s, e, _ in pieces] == [(0, 16), (16, 32), (32, 48), (48, 50)]
    torch.testing.assert_close(torch.cat([o for _, _, o in pieces], 1), y, rtol=1e-5, atol=1e-6)


def test_streaming_steps_match_whole_sequence():
    m, (u, mask) = mixer(), padded()
    y = m(u, mask)
    state, outs = m.init_state(2, u), []
    with torch.no_grad():
        for s, e in [(0, 1), (1, 2), (2, 19), (19, 20), (20, 50)]:  # single frames use the recurrence
            o, state = m.step(u[:, s:e], state, mask[:, s:e])
            outs.append(o)
    torch.testing.assert_close(torch.cat(outs, 1), y, rtol=1e-5, atol=1e-5)
    with pytest.raises(CospeechError, match="whole sequence"):
        mixer(True).init_state(2, u)


@pytest.mark.parametrize("bidirectional,chunk,piece", [(False, 8, 16), (False, 2, 2), (False, 4, 12), (True, 8, 8)])
def test_recomputing_training_paths_match_the_stored_one(bidirectional, chunk, piece):
    """recompute=True trains through the fused whole-mixer function (one direction) or
    checkpointing (bidirectional); recompute=False through stored autograd steps. Float64."""
    u, mask = padded()
    u = u.double()
    grads = []
    for recompute in (False, True):
        m = mixer(bidirectional, recompute=recompute, chunk=chunk, piece=piece).double()
        leaf = u.clone().requires_grad_()
        out = m(leaf, mask)
        (out * torch.cos(out)).sum().backward()
        grads.append([out, leaf.grad] + [p.grad for p in m.parameters()])
    for i, (a, b) in enumerate(zip(*grads)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=f"output/gradient {i}")


def tiny_mamba(bidirectional):
    torch.manual_seed(0)
    cfg = DenoiserConfig(motion_dim=12, audio_dim=5, n_speakers=2, backbone="mamba2", width=32, depth=2, dropout=0.0,
                         mixer=dict(d_state=8, head_dim=16, chunk=8, piece=16, bidirectional=bidirectional))
    model = build_denoiser(cfg).eval()
    with torch.no_grad():  # leave the zero-initialised identity start, so outputs depend on the mixers
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("bidirectional", [False, True])
def test_denoiser_runs_layers_piecewise_at_inference(bidirectional, monkeypatch):
    """Bidirectional: layer by layer, each a piece at a time; one-directional: depth-first, a
    piece through every layer with each layer's state (padding starts inside the third piece)."""
    import cospeech.models.denoiser as shell

    monkeypatch.setattr(shell, "PIECE", 12)
    model = tiny_mamba(bidirectional)
    assert all(block.mixer.streams != bidirectional for block in model.blocks)
    x, t, c = torch.randn(2, 40, 12), torch.tensor([10, 700]), cond(2, 40)
    mask = torch.ones(2, 40, dtype=torch.bool)
    mask[0, 33:] = False
    whole = model(x, t, c, mask)  # grad enabled: every layer over the whole sequence
    with torch.no_grad():
        pieces = model(x, t, c, mask)
    assert whole.shape == (2, 40, 12) and whole.abs().mean() > 1e-3
    torch.testing.assert_close(pieces, whole, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backbone", ["transformer", "mamba2"])
def test_inference_builds_tokens_and_output_piecewise(backbone, monkeypatch):
    """Without gradients the denoiser shell runs a few frames at a time: same result."""
    import cospeech.models.denoiser as shell

    monkeypatch.setattr(shell, "PIECE", 16)
    model = tiny_mamba(False) if backbone == "mamba2" else tiny_model(backbone="transformer")
    x, t, c = torch.randn(2, 45, 12), torch.tensor([10, 700]), cond(2, 45)
    c.keep = torch.tensor([True, False])
    whole = model(x, t, c)
    with torch.no_grad():
        pieces = model(x, t, c)
    torch.testing.assert_close(pieces, whole, rtol=1e-5, atol=1e-5)


def test_options_are_checked():
    assert "mamba2" in BACKBONES
    base = dict(motion_dim=12, audio_dim=5, n_speakers=2, backbone="mamba2", width=32, depth=1)
    with pytest.raises(CospeechError, match="mamba2 mixer options"):
        build_denoiser(DenoiserConfig(**base, mixer={"heads": 3}))
    with pytest.raises(CospeechError, match="not divisible"):
        build_denoiser(DenoiserConfig(**base, mixer={"head_dim": 48}))
    with pytest.raises(CospeechError, match="kernel"):
        build_denoiser(DenoiserConfig(**base, mixer={"kernel": "triton"}))
    with pytest.raises(CospeechError, match="multiple of chunk"):
        build_denoiser(DenoiserConfig(**base, mixer={"chunk": 64, "piece": 100}))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA kernels")
def test_missing_kernel_is_named():
    with pytest.raises(CospeechError, match="mamba-ssm|CUDA"):
        mixer(kernel="mamba_ssm")(torch.randn(1, 8, 32))


def test_train_generate_and_evaluate_with_mamba2(tmp_path, data_dir, capsys):
    """`--backbone mamba2` through the CLI on real clips (tiny sizes): train, describe, generate, evaluate."""
    cache, run, out = tmp_path / "cache", tmp_path / "run", tmp_path / "out"
    clips = sorted((data_dir / "show").glob("*/*.pkl"))
    split = tmp_path / "split.csv"
    split.write_text("id,type\noliver/216111-00_09_32-00_09_42,test\n")
    assert main(["prepare", "show", str(data_dir / "show"), "-o", str(cache), "--window", "60",
                 "--split-file", str(split)]) == 0
    assert main(["train", "--data", str(cache), "-o", str(run), "--preset", "tiny", "--backbone", "mamba2",
                 "--steps", "8"]) == 0
    assert "trained to step 8" in capsys.readouterr().out
    assert main(["info", "-m", str(run)]) == 0
    assert "backbone: mamba2" in capsys.readouterr().out
    clip = clips[0].with_suffix(".wav")
    assert main(["generate", str(clip), "-m", str(run), "-o", str(out), "--formats", "npz", "--steps", "3"]) == 0
    with np.load(out / f"{clip.stem}.npz") as d:
        assert d["poses"].shape[1] == 165 and np.isfinite(d["poses"]).all()
    report = tmp_path / "report.json"
    assert main(["evaluate", str(run), "--data", str(cache), "--samples", "1", "--steps", "2",
                 "--json", str(report)]) == 0
    res = json.loads(report.read_text())
    assert res["run"]["model"]["path"] == str(run) and len(res["run"]["model"]["sha256"]) == 64
    assert np.isfinite(res["results"]["model"]["FGD"]["mean"])


def test_gated_norm_matches_formula_and_gradcheck():
    g = torch.Generator().manual_seed(0)
    y, z = (torch.randn(2, 11, 6, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2))
    w = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    gate = y * torch.nn.functional.silu(z)
    plain = gate / torch.sqrt(gate.pow(2).mean(-1, keepdim=True) + 1e-5) * w
    torch.testing.assert_close(gated_rms_norm(y, z, w, piece=4), plain)
    assert torch.autograd.gradcheck(lambda y, z, w: gated_rms_norm(y, z, w, piece=4), (y, z, w))
