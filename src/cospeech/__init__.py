"""cospeech: speech in, holistic 3D motion (body, hands, face, lips) out, with diffusion models.

    import cospeech
    model = cospeech.load_model()              # the bundled default, offline
    motion = model.generate(wave, sample_rate, seed=0)   # SmplxMotion, T = round(duration × fps)

Shapes in every docstring and comment use one legend: B batch (rows, windows), T motion frames,
Ta audio frames of a feature stream, W frames per window, D motion feature channels, C audio
feature channels, J joints, M model width, S style size, K style tokens (modules with more
letters, such as the Mamba-2 scan's heads and state size, list them in their own docstring).
"""

from ._version import __version__
from .errors import CospeechError


def load_model(path=None):
    """Load a model folder, a model.safetensors, a training run (latest checkpoint), or the
    bundled default when `path` is None. Returns a `MotionGenerator`."""
    from .generator import load_model as _load

    return _load(path)


__all__ = ["CospeechError", "__version__", "load_model"]
