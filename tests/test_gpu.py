"""The CUDA paths: generation, a training run, and the mamba-ssm scan kernel against the pure
PyTorch scan. Marked `gpu`; on a machine without CUDA they skip and say why."""

import importlib.util
import math

import numpy as np
import pytest
import soundfile as sf
import torch

import cospeech
from cospeech.cli.main import example_speech

from .conftest import BEAT2, need_data

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_generate_on_cuda_matches_cpu():
    model = cospeech.load_model()
    wave, sr = sf.read(example_speech(), dtype="float32")
    cpu = model.generate(wave, sr, seed=0, steps=5)
    cuda = model.generate(wave, sr, seed=0, steps=5, device="cuda")
    assert np.abs(cpu.poses - cuda.poses).max() < 1e-2
    half = model.generate(wave, sr, seed=0, steps=5, device="cuda", dtype="bfloat16")
    assert np.isfinite(half.poses).all() and np.abs(cpu.poses - half.poses).mean() < 0.1


def test_train_steps_on_cuda(tmp_path):
    need_data()
    from cospeech.data import prepare
    from cospeech.train import train

    prepare("beat2", BEAT2, tmp_path / "cache", window=60, stride=30)
    gen = train(tmp_path / "cache", tmp_path / "run", preset="tiny", steps=20, progress=False, device="cuda")
    assert gen.info["training"]["step"] == 20 and math.isfinite(gen.info["training"]["loss_smooth"])
    assert next(gen.denoiser.parameters()).device.type == "cpu"


@pytest.mark.skipif(importlib.util.find_spec("mamba_ssm") is None, reason="needs the mamba-ssm package")
def test_mamba_ssm_kernel_matches_the_torch_scan():
    from cospeech.models.mamba2 import Mamba2Mixer, Mamba2Options

    torch.manual_seed(0)
    ref = Mamba2Mixer(64, Mamba2Options(kernel="torch", head_dim=16, d_state=16)).cuda()
    fast = Mamba2Mixer(64, Mamba2Options(kernel="mamba_ssm", head_dim=16, d_state=16)).cuda()
    fast.load_state_dict(ref.state_dict())
    u = torch.randn(2, 300, 64, device="cuda")
    with torch.no_grad():
        assert torch.allclose(ref(u), fast(u), atol=1e-3, rtol=1e-3)
