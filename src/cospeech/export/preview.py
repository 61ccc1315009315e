"""A stick-figure preview video with the speech as its audio track.

Two front views side by side: the whole body, and the upper body close up (hands and head).
Frames are drawn with Pillow (a few hundred lines a frame; matplotlib's canvas was ~30 ms a
frame) and piped to the ffmpeg that the `imageio-ffmpeg` wheel ships, so no system package is
needed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from ..atomic import atomic_path
from ..errors import CospeechError
from ..motion import SmplxMotion, joint_positions, smplx_skeleton

PANEL = 480  # pixels per panel side; a multiple of 16 for the video encoder
_LEFT, _RIGHT, _MID = "#2b6cb0", "#c53030", "#4a5568"
_UPPER = ("spine3", "neck", "head", "left_wrist", "right_wrist", "left_elbow", "right_elbow", "left_middle3", "right_middle3")


def _colours(names) -> list[str]:
    return [_LEFT if n.startswith("left") else _RIGHT if n.startswith("right") else _MID for n in names]


def _view(points: np.ndarray, left: int, size: int, margin: float = 0.12):
    """A fixed camera for a panel: world (x, y) -> pixel (u, v), fitted to 1st-99th percentiles."""
    lo, hi = np.percentile(points, 1, axis=0), np.percentile(points, 99, axis=0)
    centre = (lo + hi) / 2
    span = max(float((hi - lo).max()), 0.3) * (1 + 2 * margin)
    k = size / span

    def project(p: np.ndarray) -> np.ndarray:
        u = left + size / 2 + (p[..., 0] - centre[0]) * k
        v = size / 2 - (p[..., 1] - centre[1]) * k
        return np.stack([u, v], axis=-1)

    project.scale = k  # pixels per metre
    return project


HEAD_RADIUS = 0.09  # metres, for the circle drawn around the head joint


def write_preview(
    motion: SmplxMotion, path: str | Path, audio: tuple[np.ndarray, int] | None = None, title: str = "",
) -> Path:
    """Render `motion` to an H.264 mp4 at its own fps; `audio` = (mono wave (N,), sample rate)."""
    import imageio_ffmpeg
    from PIL import Image, ImageDraw

    skel = smplx_skeleton()
    pos = joint_positions(motion.poses, motion.trans, skel)  # (T, J, 3)
    xy = pos[..., :2]  # front view: x to the viewer's right (the body's left), y up
    bones = [(p, j) for j, p in enumerate(skel.parents) if p >= 0]
    colours = _colours([skel.names[j] for _, j in bones])
    upper = [skel.names.index(n) for n in _UPPER]
    head = skel.names.index("head")
    panels = [
        (_view(xy.reshape(-1, 2), 0, PANEL), 3),
        (_view(xy[:, upper].reshape(-1, 2), PANEL, PANEL), 4),
    ]
    width, height = 2 * PANEL, PANEL

    def frames():
        for t in range(motion.n_frames):
            img = Image.new("RGB", (width, height), "white")
            draw = ImageDraw.Draw(img)
            for project, line_width in panels:
                uv = project(xy[t])  # (J, 2)
                for (p, j), colour in zip(bones, colours):
                    draw.line([tuple(uv[p]), tuple(uv[j])], fill=colour, width=line_width)
                r = HEAD_RADIUS * project.scale
                (cu, cv) = project(xy[t, head] + [0.0, 0.05])
                draw.ellipse([cu - r, cv - r, cu + r, cv + r], outline=_MID, width=line_width)
            draw.line([(PANEL, 0), (PANEL, height)], fill="#e2e8f0", width=1)
            draw.text((8, 6), f"{title}  {t / motion.fps:6.2f} s", fill="black")
            yield img.tobytes()

    path = Path(path)
    with tempfile.TemporaryDirectory() as tmpdir, atomic_path(path, suffix=".mp4") as tmp:
        audio_path = None
        if audio is not None:
            audio_path = str(Path(tmpdir) / "speech.wav")
            sf.write(audio_path, np.asarray(audio[0], dtype=np.float32), int(audio[1]))
        writer = imageio_ffmpeg.write_frames(
            str(tmp), (width, height), fps=motion.fps, codec="libx264", macro_block_size=16,
            audio_path=audio_path, audio_codec="aac" if audio_path else None,
            output_params=["-preset", "veryfast", "-tune", "animation"] + (["-shortest"] if audio_path else []),
            ffmpeg_log_level="error",
        )
        try:
            writer.send(None)
            for frame in frames():
                writer.send(frame)
        except (OSError, RuntimeError) as err:
            raise CospeechError(f"{path}: video encoding failed ({err})") from None
        finally:
            writer.close()
    return path
