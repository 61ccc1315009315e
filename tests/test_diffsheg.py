"""DiffSHEG's UniEG denoiser: expression flows to gesture, never back."""

import pytest
import torch

from cospeech.errors import CospeechError
from cospeech.models import Condition, DenoiserConfig, build_denoiser

PARTS = {"root_vel": 3, "body": 12, "jaw": 6, "hands": 18, "expression": 10}  # face: jaw, expression
FACE = list(range(15, 21)) + list(range(39, 49))
GESTURE = [c for c in range(49) if c not in FACE]


def make(seed=0):
    torch.manual_seed(seed)
    cfg = DenoiserConfig(motion_dim=49, audio_dim=7, n_speakers=3, backbone="diffsheg", width=32, depth=2, heads=4,
                         mlp_ratio=2.0, dropout=0.0, motion_parts=PARTS, mixer={"face": ["jaw", "expression"], "audio_layers": 1})
    model = build_denoiser(cfg)
    for p in model.parameters():  # away from the zero start, so every path carries signal
        p.data.add_(0.05 * torch.randn_like(p))
    return model


def batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 20, 49, generator=g)
    cond = Condition(torch.randn(3, 20, 7, generator=g), torch.tensor([0, 2, -1]))
    return x, cond, torch.randint(0, 1000, (3,), generator=g), torch.randn(3, 20, 49, generator=g)


def grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {k: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for k, p in model.named_parameters()}


def test_expression_gradients_are_the_same_with_and_without_the_gesture_loss():
    model = make()
    x, cond, t, target = batch()
    out = model(x, t, cond)
    face_loss = ((out[..., FACE] - target[..., FACE]) ** 2).mean()
    gesture_loss = ((out[..., GESTURE] - target[..., GESTURE]) ** 2).mean()
    alone = grads(model, face_loss)
    out = model(x, t, cond)
    both = grads(model, ((out[..., FACE] - target[..., FACE]) ** 2).mean()
                 + ((out[..., GESTURE] - target[..., GESTURE]) ** 2).mean())
    expression = [k for k in alone if k.startswith("expression.")]
    assert len(expression) > 10
    for k in expression:
        assert torch.equal(alone[k], both[k]), k
    assert all(alone[k].abs().max() > 0 for k in expression if k.endswith("weight"))  # the face loss does reach them
    # the gesture branch learns from the gesture loss; the shared speech encoder from both
    assert all(alone[k].abs().max() == 0 for k in alone if k.startswith("gesture."))
    assert all(both[k].abs().max() > 0 for k in both if k.startswith("gesture.") and k.endswith("weight"))
    shared = [k for k in alone if k.startswith("audio_")]
    assert any(not torch.allclose(alone[k], both[k]) for k in shared)
    assert gesture_loss.item() > 0


def test_information_flows_from_expression_to_gesture_only():
    model = make().eval()
    x, cond, t, _ = batch()
    with torch.no_grad():
        base = model(x, t, cond)
        moved_gesture = x.clone()
        moved_gesture[..., GESTURE] += 1.0
        out = model(moved_gesture, t, cond)
        assert torch.equal(out[..., FACE], base[..., FACE])  # the face never sees the gesture
        moved_face = x.clone()
        moved_face[..., FACE] += 1.0
        out = model(moved_face, t, cond)
        assert (out[..., GESTURE] - base[..., GESTURE]).abs().max() > 1e-3  # the gesture reads the face


def test_needs_face_and_gesture_parts():
    cfg = DenoiserConfig(motion_dim=16, audio_dim=7, n_speakers=1, backbone="diffsheg", width=16, depth=1, heads=2,
                         motion_parts={"jaw": 6, "expression": 10})
    with pytest.raises(CospeechError, match="face parts .* and gesture parts"):
        build_denoiser(cfg)
    with pytest.raises(CospeechError, match="needs the motion's parts"):
        build_denoiser(DenoiserConfig(motion_dim=16, audio_dim=7, n_speakers=1, backbone="diffsheg", width=16, heads=2))


@pytest.mark.parametrize("guidance", [1.0, 2.5])
def test_speech_encoded_once_per_sampling_run_gives_the_same_motion(guidance):
    """`prepare_condition` runs the speech encoder once for all steps (it reads neither x_t nor t):
    the motion is that of encoding at every step, guided or not, with windows split over calls."""
    from cospeech.diffusion import DiffusionConfig, sample

    model = make().eval()
    calls = []
    model.audio_mid[0].register_forward_hook(lambda *a: calls.append(1))
    _, cond, _, noise = batch()
    mask = torch.ones(3, 20, dtype=torch.bool)
    mask[2, 15:] = False
    cfg = DiffusionConfig(prediction="epsilon", sample_steps=6, guidance=guidance)

    def every_step(x, t, c, m):  # the same network without the method: the encoder runs inside each call
        return model(x, t, c, m)

    runs = {}
    for name, net in (("once", model), ("every", every_step)):
        calls.clear()
        runs[name] = sample(net, cond, tuple(noise.shape), cfg, torch.Generator().manual_seed(0), noise=noise.clone(),
                            mask=mask, max_batch=2)
        runs[name + "_calls"] = len(calls)
    torch.testing.assert_close(runs["once"], runs["every"], rtol=1e-5, atol=1e-5)
    assert runs["once_calls"] == 1 and runs["every_calls"] == 6 * 2  # 6 steps × 2 row chunks
    null = cond.with_derived(speech=torch.ones(3, 20, 32)).with_null()
    assert null.derived["speech"].shape == (6, 20, 32) and null.derived["speech"][3:].abs().max() == 0
    assert null.rows(slice(1, 2)).derived["speech"].shape == (1, 20, 32)
