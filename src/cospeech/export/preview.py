"""A preview video of everything a model generates, with the speech as its audio track.

Layout (one row of square panels above a timeline strip):
- **front** and **side** (from the body's right): the whole body, so gestures towards the
  camera are seen too;
- **hands**: each hand close up (a camera that follows the hand, 0.22 m across);
- **face**: a schematic face whose mouth opens with the jaw rotation and whose brows and mouth
  corners follow the face output (see `face_shape`), with bars of the leading FLAME expression
  coefficients below it;
- **timeline**: the speech waveform and the jaw-opening curve of the whole clip, with a cursor
  at the current frame, so lip sync can be judged by eye.

Every coordinate is computed for all frames at once (forward kinematics, projections, face
shapes); each frame copies a pre-drawn background and draws lines with Pillow, and all frames
go through one ffmpeg process (the binary the `imageio-ffmpeg` wheel ships; no system package)
with x264's cheapest preset (`ENCODER`): the encoder, not the drawing, is most of the time.

Legend: T frames, J joints, N audio samples.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from ..atomic import atomic_path
from ..errors import CospeechError
from ..motion import SmplxMotion, joint_positions, smplx_skeleton
from ..motion.fk import rotation_matrices

PANEL = 256  # pixels per panel side; multiples of 16 keep the encoder from resizing
STRIP = 80  # timeline height
# (the frame, 4 panels + strip = 1024 x 336, was 1280 x 416: the encoder's colour conversion and
# x264 cost per pixel, and a 62 s preview then took 2.4x its generation; see `write_preview`)
_LEFT, _RIGHT, _MID = "#2b6cb0", "#c53030", "#4a5568"
HEAD_RADIUS = 0.09  # metres, for the circle drawn around the head joint
JAW_FULL_OPEN = 0.08  # radians of jaw rotation drawn as a fully open mouth (~4.6°: the 99th
# percentile of the real BEAT2 take is 0.05; FLAME expressions carry the rest of the opening)
HAND_SPAN = 0.22  # metres across a hand view
N_EXPRESSION_BARS = 10
# How the schematic face reads the FLAME expression coefficients. FLAME's expression basis is a
# PCA whose components have no published names, so this is a display convention, not anatomy:
# the first coefficient widens or narrows the mouth, the second lifts its corners (smile /
# frown), the third raises the brows. The bars show the coefficients themselves.
FACE_MAPPING = {"mouth_width": 0, "mouth_corners": 1, "brows": 2}
# x264 settings: `ultrafast` takes about half the encoder time of `veryfast` on these frames (a
# 62 s preview: 12.5 MiB instead of 4.7 MiB), and encoding is most of a preview's time. One
# encoder thread: the drawing keeps one core busy, and x264's own threads (one per core and
# more) fought it for the other — a 62 s preview on an idle 2-core machine took 4.4-6.1 s with
# them and 3.1-4.2 s with one (three runs each, interleaved)
ENCODER = ("-preset", "ultrafast", "-threads", "1")


def _colours(names) -> list[str]:
    return [_LEFT if n.startswith("left") else _RIGHT if n.startswith("right") else _MID for n in names]


def chains(parents) -> list[list[int]]:
    """The kinematic tree as polylines: each chain follows first children from a joint down,
    and every other child starts a new chain at its parent, so every bone is in exactly one
    chain and a whole skeleton is drawn with a few polyline calls instead of one per bone."""
    children: dict[int, list[int]] = {}
    for j, p in enumerate(parents):
        children.setdefault(p, []).append(j)
    out = []
    starts = [(-1, r) for r in children.get(-1, [])]
    while starts:
        parent, j = starts.pop(0)
        chain = [parent] if parent >= 0 else []
        while True:
            chain.append(j)
            kids = children.get(j, [])
            starts += [(j, k) for k in kids[1:]]
            if not kids:
                break
            j = kids[0]
        if len(chain) > 1:
            out.append(chain)
    return out


def _camera(fit: np.ndarray, left: int, size: int, margin: float = 0.12):
    """A fixed camera for a panel, fitted to the 1st-99th percentiles of the (..., 2) world
    points `fit`: returns project((..., 2) world -> (..., 2) pixels) and its pixels per metre."""
    flat = fit.reshape(-1, 2)
    lo, hi = np.percentile(flat, 1, axis=0), np.percentile(flat, 99, axis=0)
    centre = (lo + hi) / 2
    k = size / (max(float((hi - lo).max()), 0.3) * (1 + 2 * margin))

    def project(p: np.ndarray) -> np.ndarray:
        return np.stack([left + size / 2 + (p[..., 0] - centre[0]) * k, size / 2 - (p[..., 1] - centre[1]) * k], axis=-1)

    return project, k


def jaw_opening(poses: np.ndarray) -> np.ndarray:
    """(T, 55, 3) axis-angle -> (T,) jaw opening in radians: the jaw's rotation about its x axis
    (positive opens the mouth in SMPL-X)."""
    r = rotation_matrices(poses[:, 22])  # (T, 3, 3)
    return np.arctan2(r[:, 2, 1], r[:, 1, 1])


def face_shape(motion: SmplxMotion) -> dict[str, np.ndarray]:
    """Per-frame shape of the schematic face, each (T,) in [-1, 1] or [0, 1]:
    `open` from the jaw rotation, `width`, `corners`, `brows` from `FACE_MAPPING`."""
    expr = np.clip(motion.expressions, -1, 1)  # real FLAME coefficients: std ≈ 0.15-0.3, peaks ≈ 1-2
    out = {"open": np.clip(jaw_opening(motion.poses) / JAW_FULL_OPEN, 0, 1)}
    for name, key in (("width", "mouth_width"), ("corners", "mouth_corners"), ("brows", "brows")):
        out[name] = expr[:, FACE_MAPPING[key]]
    return out


def _envelope(wave: np.ndarray, columns: int) -> np.ndarray:
    """(N,) samples -> (columns,) peak amplitude per pixel column."""
    if len(wave) < columns:
        wave = np.pad(wave, (0, columns - len(wave)))
    edges = np.linspace(0, len(wave), columns + 1).astype(int)
    return np.maximum.reduceat(np.abs(wave), edges[:-1])


class _Layout:
    """Everything drawn, computed for all T frames at once."""

    def __init__(self, motion: SmplxMotion, audio, title: str):
        skel = smplx_skeleton()
        pos = joint_positions(motion.poses, motion.trans, skel)  # (T, J, 3)
        self.chains = chains(skel.parents)
        self.colours = _colours([skel.names[c[-1]] for c in self.chains])
        head = skel.names.index("head")
        front = pos[..., [0, 1]]  # x to the viewer's right (the body's left), y up
        side = pos[..., [2, 1]]  # seen from the body's right: forward (+z) to the viewer's right
        views = []
        for points, fit, left in ((front, front, 0), (side, side, PANEL)):
            project, k = _camera(fit, left, PANEL)
            views.append((project(points), k))  # (T, J, 2) pixels
        (self.front, kf), (self.side, ks) = views[:2]
        self.heads = [(self.front[:, head] + [0, -0.05 * kf], HEAD_RADIUS * kf),
                      (self.side[:, head] + [0, -0.05 * ks], HEAD_RADIUS * ks)]
        # each hand seen from the front by a camera that follows the hand (its fingers' centre)
        kh = (PANEL / 2) / HAND_SPAN
        self.hands = []
        for wrist, fingers, left in ((21, range(40, 55), 2 * PANEL), (20, range(25, 40), 2 * PANEL + PANEL // 2)):
            joints = [wrist - 2, wrist, *fingers]  # elbow, wrist, fingers
            rel = front[:, joints] - front[:, list(fingers)].mean(axis=1, keepdims=True)  # (T, j, 2)
            uv = np.stack([left + PANEL / 4 + rel[..., 0] * kh, PANEL * 0.45 - rel[..., 1] * kh], axis=-1)
            index = {j: i for i, j in enumerate(joints)}
            sub_parents = [index.get(skel.parents[j], -1) for j in joints]
            self.hands.append((uv, chains(sub_parents), _RIGHT if wrist == 21 else _LEFT))
        self.face = face_shape(motion)
        self.expr = np.clip(motion.expressions[:, :N_EXPRESSION_BARS] / 1.5, -1, 1)  # (T, 10)
        self.width, self.height = 4 * PANEL, PANEL + STRIP
        self.n = motion.n_frames
        self.fps = motion.fps
        self.title = title
        self.audio = audio
        # timeline: x pixel of each frame, jaw curve in pixels
        self.cursor = np.linspace(0, self.width - 1, max(self.n, 2))[: self.n]
        jaw = jaw_opening(motion.poses)
        self.jaw_max = max(float(np.abs(jaw).max()), 1e-3)
        jaw = np.clip(jaw / self.jaw_max, 0, 1)  # the curve scaled to its own peak
        self.jaw_curve = [(float(x), PANEL + STRIP - 8 - float(y) * (STRIP - 24)) for x, y in zip(self.cursor, jaw)]

    def background(self, font):
        from PIL import Image, ImageDraw

        img = Image.new("RGB", (self.width, self.height), "white")
        draw = ImageDraw.Draw(img)
        draw.text((8, 6), self.title, fill="black", font=font)
        for i, label in enumerate(("front", "side (right)", "right hand   left hand", "face")):
            draw.text((i * PANEL + 8, PANEL - 16), label, fill="#718096", font=font)
            if i:
                draw.line([(i * PANEL, 0), (i * PANEL, PANEL)], fill="#e2e8f0", width=1)
        draw.rectangle([0, PANEL, self.width, self.height], fill="#f7fafc")
        mid = PANEL + STRIP / 2
        if self.audio is not None:
            env = _envelope(np.asarray(self.audio[0], dtype=np.float32), self.width)
            env = env / max(float(env.max()), 1e-6) * (STRIP / 2 - 6)
            for x, e in enumerate(env):
                draw.line([(x, mid - e), (x, mid + e)], fill="#cbd5e0")
        if len(self.jaw_curve) > 1:
            draw.line(self.jaw_curve, fill=_RIGHT, width=2)
        draw.text((8, PANEL + 4), f"speech waveform (grey) and jaw opening (red, top = {np.degrees(self.jaw_max):.1f}°)",
                  fill="#718096", font=font)
        return img

    def draw_face(self, draw, t: int) -> None:
        u = PANEL / 320  # the face was drawn for 320-pixel panels; every size scales with the panel
        x0, cx, cy = 3 * PANEL, 3 * PANEL + PANEL / 2, PANEL * 0.36
        draw.rectangle([x0 + 1, 0, x0 + PANEL, PANEL - 20], fill="white")  # over a hand that strays
        rx, ry = PANEL * 0.26, PANEL * 0.30
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], outline=_MID, width=3)
        brow = (6 + 10 * self.face["brows"][t]) * u
        for side in (-1, 1):
            ex = cx + side * rx * 0.42
            draw.ellipse([ex - 9 * u, cy - 30 * u, ex + 9 * u, cy - 18 * u], outline=_MID, width=2)
            draw.line([(ex - 16 * u, cy - 38 * u - brow), (ex + 16 * u, cy - 38 * u - brow)], fill=_MID, width=3)
        half_w = rx * (0.42 + 0.12 * self.face["width"][t])
        open_h = (2 + 34 * self.face["open"][t]) * u
        my = cy + ry * 0.52
        lift = 10 * u * self.face["corners"][t]
        draw.polygon([(cx - half_w, my - lift), (cx, my - 2 * u), (cx + half_w, my - lift), (cx, my + open_h)],
                     fill="#742a2a", outline=_MID)
        # leading expression coefficients
        base, bw = PANEL * 0.86, (PANEL - 40 * u) / N_EXPRESSION_BARS
        for i, v in enumerate(self.expr[t]):
            bx = x0 + 20 * u + i * bw
            draw.rectangle([bx + 2, min(base, base - 26 * u * v), bx + bw - 2, max(base, base - 26 * u * v)],
                           fill=_LEFT if v >= 0 else _RIGHT)
        draw.line([(x0 + 16 * u, base), (x0 + PANEL - 16 * u, base)], fill="#a0aec0", width=1)

    def frames(self):
        from PIL import ImageDraw, ImageFont

        font = ImageFont.load_default()  # loaded once: drawing text without a font loads it each time
        base = self.background(font)
        strip = base.crop((0, PANEL, self.width, self.height))  # pasted back over limbs that stray
        clock_x = 8 + (ImageDraw.Draw(base).textlength(self.title + "  ", font=font) if self.title else 0)
        for t in range(self.n):
            img = base.copy()
            draw = ImageDraw.Draw(img)
            for uv in (self.front[t], self.side[t]):
                for chain, colour in zip(self.chains, self.colours):
                    draw.line(uv[chain].ravel().tolist(), fill=colour, width=3, joint="curve")
            for uv, hand_chains, colour in self.hands:
                for chain in hand_chains:
                    draw.line(uv[t, chain].ravel().tolist(), fill=colour, width=5, joint="curve")
            for centres, r in self.heads:
                cu, cv = centres[t]
                draw.ellipse([cu - r, cv - r, cu + r, cv + r], outline=_MID, width=3)
            self.draw_face(draw, t)
            img.paste(strip, (0, PANEL))
            x = float(self.cursor[t])
            draw.line([(x, PANEL), (x, self.height)], fill=_LEFT, width=2)
            draw.text((clock_x, 6), f"{t / self.fps:.2f} s", fill="black", font=font)
            yield img.tobytes()


def write_preview(
    motion: SmplxMotion, path: str | Path, audio: tuple[np.ndarray, int] | None = None, title: str = "",
) -> Path:
    """Render `motion` to an H.264 mp4 at its own fps, one video frame per motion frame;
    `audio` = (mono wave (N,), sample rate) becomes its sound track."""
    import imageio_ffmpeg

    layout = _Layout(motion, audio, title)
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmpdir, atomic_path(path, suffix=".mp4") as tmp:
        audio_path = None
        if audio is not None:
            audio_path = str(Path(tmpdir) / "speech.wav")
            sf.write(audio_path, np.asarray(audio[0], dtype=np.float32), int(audio[1]))
        writer = imageio_ffmpeg.write_frames(
            str(tmp), (layout.width, layout.height), fps=motion.fps, codec="libx264", macro_block_size=16,
            audio_path=audio_path, audio_codec="aac" if audio_path else None,
            output_params=list(ENCODER),
            ffmpeg_log_level="error",
        )
        try:
            writer.send(None)
            for frame in layout.frames():
                writer.send(frame)
        except (OSError, RuntimeError) as err:
            raise CospeechError(f"{path}: video encoding failed ({err})") from None
        finally:
            writer.close()
    return path
