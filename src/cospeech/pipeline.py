"""Speech files in, motion files out: the loop behind `cospeech generate`, as a library call.

    from cospeech.pipeline import generate_files
    report = generate_files(None, ["talk.wav"], "out/", ("npz", "bvh"), SampleOptions(seed=1))

Every input is checked once, generated, checked finite and written in each format; a bad input
or a failed write is reported (one line naming the file) and the other inputs still go on.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .audio import load_audio
from .errors import CospeechError
from .export import DEFAULT_FORMATS, export, parse_formats
from .generator import MotionGenerator, SampleOptions, load_model
from .motion import SmplxMotion


@dataclass
class GenerateReport:
    """What `generate_files` did: the files written per input, and one message per failed input."""

    written: dict[Path, list[Path]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def output_folder(out: str | Path) -> Path:
    """Create the output folder; a path that is a file, or cannot be made, is a one-line error."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CospeechError(f"{out}: is an existing file; the output (-o) must be a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CospeechError(f"{out}: cannot create the output folder ({err.strerror or err})") from None
    return out


def read_pose(spec: str | Path, base: Path | None = None) -> SmplxMotion:
    """'FILE[:FRAME]' -> a one-frame motion: frame FRAME (default 0; negative from the end) of an
    SMPL-X npz with BEAT2 key names (as `cospeech generate` writes and BEAT2 ships).
    A relative FILE is taken from `base` when given."""
    from .data.base import Take
    from .data.folder import load_motion

    text = str(spec)
    path, frame = text, 0
    head, sep, tail = text.rpartition(":")
    if sep and tail.lstrip("-").isdigit():
        path, frame = head, int(tail)
    path = Path(path)
    if base is not None and not path.is_absolute():
        path = base / path
    if path.suffix != ".npz":
        raise CospeechError(f"{path}: poses are read from SMPL-X .npz files (BEAT2 key names)")
    if not path.is_file():
        raise CospeechError(f"{path}: no such pose file")
    motion = load_motion(Take("pose", path.stem, "", "", path, path))
    idx = frame + motion.n_frames if frame < 0 else frame
    if not 0 <= idx < motion.n_frames:
        raise CospeechError(f"{path}: has {motion.n_frames} frames; frame {frame} does not exist")
    return motion.crop(idx, idx + 1)


def read_keyframes(path: str | Path) -> dict[int, SmplxMotion]:
    """A JSON object {"FRAME": "FILE[:FRAME]", ...} (files relative to the JSON's folder) ->
    frame -> pose; negative frames count from the end of the generated motion."""
    path = Path(path)
    try:
        table = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CospeechError(f"{path}: cannot read keyframes ({err})") from None
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise CospeechError(f'{path}: keyframes must be a JSON object {{"frame": "pose.npz[:frame]", ...}}')
    out = {}
    for key, pose in table.items():
        try:
            frame = int(key)
        except ValueError:
            raise CospeechError(f"{path}: keyframe {key!r} is not a frame number") from None
        out[frame] = read_pose(pose, path.parent)
    return out


PROGRESS_AFTER_S = 30.0  # speech longer than this gets a progress bar in generate_files


class _StepBar:
    """A tqdm bar on stderr driven by `MotionGenerator.generate(on_step=...)`; off when `show` is false
    or stderr is not a terminal."""

    def __init__(self, name: str, show: bool):
        self.name, self.show, self.bar = name, show, None

    def on_step(self, done: int, total: int) -> None:
        if not self.show:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.name, unit="step", leave=False, disable=None)
        self.bar.update(done - self.bar.n)

    def __enter__(self) -> "_StepBar":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


def generate_files(
    model: MotionGenerator | str | Path | None, inputs, out_dir: str | Path,
    formats: tuple[str, ...] | str = DEFAULT_FORMATS, options: SampleOptions | None = None,
    log: Callable[[str], None] = print, error: Callable[[str], None] | None = None,
    keyframes: dict[int, SmplxMotion] | None = None, progress: bool = False, audio_encoder=None,
    style_from: str | Path | None = None,
) -> GenerateReport:
    """Generate motion for each speech file into `out_dir` as <stem>.<format>.

    model: a loaded model, a model/run folder, or None for the bundled one. formats: names in
    `EXPORTERS` (or 'npz,bvh'). Problems that concern every input (unknown format or speaker,
    bad options, colliding names, an output path that is a file) raise before any work; a
    problem with one input is reported through `error` and in the returned report.
    keyframes: frame -> pose every input's motion passes through (see `read_keyframes`).
    progress: a bar of the denoising steps on stderr for speech longer than `PROGRESS_AFTER_S`
    (when stderr is a terminal).
    audio_encoder: `KIND=DIR` (or an encoder) for a model trained on SSL features. style_from: a
    reference recording whose fuzzy style vector replaces the speaker (`MotionGenerator.style_from`).
    """
    inputs = [Path(p) for p in inputs]
    formats = parse_formats(formats)
    options = options or SampleOptions()
    stems = [p.stem for p in inputs]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise CospeechError(f"several inputs are named {dupes[0]!r}; their outputs would overwrite each other")
    gen = model if isinstance(model, MotionGenerator) else load_model(model)
    if audio_encoder is not None:
        gen.attach_encoder(audio_encoder)
    if style_from is not None:
        if getattr(gen.denoiser, "style_dim", None) is None:
            raise CospeechError("--style-from: this model has no fuzzy style extractor (train a dim-gestor preset)")
        ref = Path(style_from)
        options = SampleOptions.of(options, style=gen.style_from(load_audio(ref, gen.cfg.audio.sample_rate),
                                                                   gen.cfg.audio.sample_rate))
    gen.check_options(options)
    out = output_folder(out_dir)
    sr = gen.cfg.audio.sample_rate
    report = GenerateReport()
    for path in inputs:
        try:
            t0 = time.perf_counter()
            wave = load_audio(path, sr)
            with _StepBar(path.name, progress and len(wave) / sr > PROGRESS_AFTER_S) as bar:
                motion = gen.generate(wave, sr, options, checked=True, keyframes=keyframes, on_step=bar.on_step)
            t_gen = time.perf_counter() - t0
            written = export(motion, formats, out, path.stem, audio=(wave, sr), title=path.stem)
        except CospeechError as err:
            message = str(err) if str(path) in str(err) else f"{path}: {err}"
            report.errors.append(message)
            if error is not None:
                error(message)
            continue
        report.written[path] = written
        log(f"{path}: {len(wave) / sr:.1f} s of speech -> {motion.n_frames} frames at {motion.fps:g} fps "
            f"(motion {t_gen:.1f} s, files {time.perf_counter() - t0 - t_gen:.1f} s): "
            + ", ".join(str(w) for w in written))
    return report
