"""The feature extractor behind FGD / FED / FMD: a motion auto-encoder the project trains.

Paper FGD numbers cannot be compared because each repository uses its own extractor, frame
rate, window and scaling. Ours is a file: `evaluator.safetensors` + `evaluator.json`, and
every metric table names it by the sha256 of its weights.

Two convolutional auto-encoders over windows of W frames: one for gesture channels (body and,
where every training take has them, hand rotations), one for the face (jaw and expression).
A window's feature is the mean and standard deviation over time of the encoder's latent
sequence: FGD uses the gesture features, FED the face features, FMD both concatenated.

Legend: B windows, W frames per window, D channels, L latent channels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..data import FeatureCache
from ..artifacts import config_from_dict, load_tensors, read_json, save_tensors, sha256_file, write_json
from ..errors import CospeechError
from ..motion import MotionSpec, Normalizer

WEIGHTS = "evaluator.safetensors"
CONFIG = "evaluator.json"


@dataclass(frozen=True)
class EvaluatorConfig:
    gesture_parts: tuple[str, ...]
    face_parts: tuple[str, ...]
    window: int = 32
    width: int = 128
    latent: int = 32

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EvaluatorConfig":
        return config_from_dict(cls, d, "evaluator settings")


class ConvAutoEncoder(nn.Module):
    """(B, W, D) -> latent sequence (B, W / 4, L) -> reconstruction (B, W, D)."""

    def __init__(self, dim: int, width: int, latent: int):
        super().__init__()
        act = nn.LeakyReLU(0.2)
        self.encoder = nn.Sequential(
            nn.Conv1d(dim, width, 3, padding=1), act,
            nn.Conv1d(width, width, 4, stride=2, padding=1), act,
            nn.Conv1d(width, width, 4, stride=2, padding=1), act,
            nn.Conv1d(width, latent, 3, padding=1),
        )
        self.decoder = nn.Sequential(
            nn.Conv1d(latent, width, 3, padding=1), act,
            nn.Upsample(scale_factor=2), nn.Conv1d(width, width, 3, padding=1), act,
            nn.Upsample(scale_factor=2), nn.Conv1d(width, width, 3, padding=1), act,
            nn.Conv1d(width, dim, 3, padding=1),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.transpose(1, 2)).transpose(1, 2)  # (B, W/4, L)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(x).transpose(1, 2)).transpose(1, 2)  # (B, W, D)


class MotionEvaluator(nn.Module):
    """Feature extractor over a MotionSpec's channels (denormalised motion features)."""

    def __init__(self, cfg: EvaluatorConfig, spec: MotionSpec, norm: Normalizer, info: dict | None = None):
        super().__init__()
        if cfg.window % 4:
            raise CospeechError(f"evaluator window must be a multiple of 4, got {cfg.window}")
        self.cfg, self.spec, self.norm, self.info = cfg, spec, norm, info or {}
        slices = spec.slices()
        missing = [p for p in cfg.gesture_parts + cfg.face_parts if p not in slices]
        if missing:
            raise CospeechError(f"evaluator parts {missing} are not in the motion spec {spec.names}")
        self.channels = {
            "gesture": np.concatenate([np.arange(slices[p].start, slices[p].stop) for p in cfg.gesture_parts]),
            "face": np.concatenate([np.arange(slices[p].start, slices[p].stop) for p in cfg.face_parts]),
        }
        self.nets = nn.ModuleDict({k: ConvAutoEncoder(len(c), cfg.width, cfg.latent) for k, c in self.channels.items()})
        self.hash: str | None = None

    def branch_input(self, x: torch.Tensor, branch: str) -> torch.Tensor:
        """Normalised channels of one branch. x: (B, W, D) normalised full features."""
        return x[..., torch.as_tensor(self.channels[branch])]

    def check_spec(self, spec: MotionSpec) -> None:
        """Fail unless `spec` holds every part this evaluator reads exactly as it was trained on
        (the other parts, e.g. how the root is encoded, do not matter to it)."""
        own = {p.name: p for p in self.spec.parts}
        other = {p.name: p for p in spec.parts}
        for name in self.cfg.gesture_parts + self.cfg.face_parts:
            if other.get(name) != own[name]:
                raise CospeechError(f"the evaluator reads part {name!r} as {own[name]}, which this motion spec "
                                    f"{'lacks' if name not in other else f'holds as {other[name]}'}")

    def _own_layout(self, motion: np.ndarray, spec: MotionSpec | None) -> np.ndarray:
        """(T, D') features of `spec` -> (T, D) in the evaluator's layout (the parts it reads)."""
        motion = np.asarray(motion, np.float32)
        if spec is None or spec == self.spec:
            return motion
        self.check_spec(spec)
        out = np.zeros((len(motion), self.spec.dim), np.float32)
        src, dst = spec.slices(), self.spec.slices()
        for name in self.cfg.gesture_parts + self.cfg.face_parts:
            out[:, dst[name]] = motion[:, src[name]]
        return out

    def windows(self, motion: np.ndarray, stride: int | None = None, spec: MotionSpec | None = None) -> np.ndarray:
        """(T, D) denormalised features -> (N, W, D) normalised windows (empty if T < W). spec:
        the motion's spec when it is not the evaluator's own (see `check_spec`)."""
        w = self.cfg.window
        stride = stride or w // 2
        x = self.norm.normalize(self._own_layout(motion, spec))
        starts = range(0, len(x) - w + 1, stride)
        return np.stack([x[s : s + w] for s in starts]) if len(x) >= w else np.zeros((0, w, x.shape[1]), np.float32)

    @torch.no_grad()
    def features(self, motion: np.ndarray, stride: int | None = None,
                 spec: MotionSpec | None = None) -> dict[str, np.ndarray]:
        """(T, D) denormalised motion features -> {"gesture": (N, 2L), "face": (N, 2L), "motion": (N, 4L)}.
        spec: the motion's spec when it is not the evaluator's own."""
        x = torch.from_numpy(self.windows(motion, stride, spec))
        out = {}
        for branch, net in self.nets.items():
            z = net.eval().encode(self.branch_input(x, branch))  # (N, W/4, L)
            out[branch] = torch.cat([z.mean(1), z.std(1, unbiased=False)], dim=-1).numpy().astype(np.float64)
        out["motion"] = np.concatenate([out["gesture"], out["face"]], axis=1)
        return out

    # -- files ----------------------------------------------------------------------------
    def save(self, folder: str | Path) -> str:
        """Write evaluator.safetensors + evaluator.json; returns the sha256 of the weights."""
        folder = Path(folder)
        save_tensors(self.state_dict(), folder / WEIGHTS)
        self.hash = sha256_file(folder / WEIGHTS)
        meta = {"config": self.cfg.to_dict(), "spec": self.spec.to_dict(), "norm": self.norm.to_dict(),
                "sha256": self.hash, "info": self.info}
        write_json(folder / CONFIG, meta)
        return self.hash

    @classmethod
    def load(cls, folder: str | Path) -> "MotionEvaluator":
        folder = Path(folder)
        if not (folder / CONFIG).exists() or not (folder / WEIGHTS).exists():
            raise CospeechError(f"{folder}: not an evaluator folder ({WEIGHTS} + {CONFIG}); see `cospeech train-evaluator`")
        meta = read_json(folder / CONFIG, "evaluator config")
        try:
            ev = cls(EvaluatorConfig.from_dict(meta["config"]), MotionSpec.from_dict(meta["spec"]),
                     Normalizer.from_dict(meta["norm"]), meta.get("info"))
            expected = meta["sha256"]
        except (KeyError, TypeError) as err:
            raise CospeechError(f"{folder / CONFIG}: damaged evaluator config ({err!r})") from None
        digest = sha256_file(folder / WEIGHTS)
        if digest != expected:
            raise CospeechError(f"{folder / WEIGHTS}: sha256 {digest[:12]}… does not match its config {expected[:12]}…")
        try:
            ev.load_state_dict(load_tensors(folder / WEIGHTS))
        except RuntimeError as err:
            raise CospeechError(f"{folder}: weights do not fit the config ({str(err).splitlines()[0]})") from None
        ev.hash = digest
        return ev.eval()


def bundled_evaluator_path() -> Path:
    from importlib import resources

    return Path(str(resources.files("cospeech") / "assets" / "evaluator"))


def common_parts(cache: FeatureCache, wanted: tuple[str, ...]) -> tuple[str, ...]:
    """The parts of `wanted` that every take of the cache really holds."""
    return tuple(p for p in wanted if all(p in t.meta["parts"] for t in cache.takes))


def train_evaluator(cache: FeatureCache, out: str | Path, steps: int = 3000, batch_size: int = 64, lr: float = 1e-3,
                    window: int = 32, seed: int = 0, progress: bool = True) -> MotionEvaluator:
    """Fit the auto-encoders to reconstruct windows of the cache's motion; save into `out`."""
    gesture = common_parts(cache, ("body", "hands"))
    face = common_parts(cache, ("jaw", "expression"))
    if not gesture or not face:
        raise CospeechError(f"{cache.root}: the takes share no body or face parts to evaluate")
    norm = cache.spec.fit_normalizer([t.motion for t in cache.takes], [t.mask for t in cache.takes])
    torch.manual_seed(seed)
    ev = MotionEvaluator(EvaluatorConfig(gesture, face, window), cache.spec, norm)
    data = [norm.normalize(t.motion).astype(np.float32) for t in cache.takes if t.n_frames >= window]
    rows = [(i, s) for i, x in enumerate(data) for s in range(0, len(x) - window + 1, 2)]
    if not rows:
        raise CospeechError(f"{cache.root}: no take is {window} frames long")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(ev.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    from tqdm import tqdm

    losses = []
    ev.train()
    for _ in tqdm(range(steps), desc="train-evaluator", unit="step", disable=None if progress else True):
        pick = torch.randint(0, len(rows), (batch_size,), generator=gen).tolist()
        x = torch.from_numpy(np.stack([data[rows[k][0]][rows[k][1] : rows[k][1] + window] for k in pick]))
        loss = 0.0
        for branch, net in ev.nets.items():
            target = ev.branch_input(x, branch)
            recon = net(target)
            loss = loss + ((recon - target) ** 2).mean() + ((recon.diff(dim=1) - target.diff(dim=1)) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    ev.info = {"steps": steps, "loss_first": float(np.mean(losses[:20])), "loss_last": float(np.mean(losses[-50:])),
               "data_hash": cache.data_hash, "takes": [t.meta["id"] for t in cache.takes]}
    ev.save(out)
    return ev.eval()
