"""Checks that fail when something is broken even though every shape is right: the bundled model
replaced by random weights, the README's results drifting from what `cospeech evaluate` measures,
outputs half-written on SIGTERM, a preview video shorter than its motion."""

import json
import re
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import cospeech
from cospeech.atomic import atomic_path, write_text

from .conftest import BEAT2_TAKE

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHARED_SPLIT = ROOT / "tools" / "shared_split.csv"  # the README tables' split: one held-out SHOW clip
# own-audio error must be below this fraction of the other-audio error (measured on the take's first
# 120 frames, DDIM 10 steps: bundled 0.208 / 1.45 = 0.14; random weights 1.266 / 1.267 = 1.0)
AUDIO_MARGIN = 0.25


@pytest.fixture(scope="module")
def beat2_take(cache_dir):
    from cospeech.data import load_cache

    return [t for t in load_cache(cache_dir).takes if t.meta["id"] == BEAT2_TAKE][0]


def audio_errors(model, take, frames=120, other=900, steps=10):
    """Normalised squared error of the motion generated for the first `frames` frames of a training take
    against their ground truth: (from their own speech, from the speech `other` frames later)."""
    truth = model.motion_norm.normalize(take.motion[:frames])[:, take.mask]
    out = []
    for start in (0, other):
        audio = model.audio_norm.normalize(take.audio[start : start + frames])
        feats = model.sample_features(audio, seed=0, speaker=take.meta["speaker"], steps=steps)
        out.append(float(np.mean((model.motion_norm.normalize(feats)[:, take.mask] - truth) ** 2)))
    return tuple(out)


def follows_its_audio(model, take) -> bool:
    own, other = audio_errors(model, take)
    return own < AUDIO_MARGIN * other


def random_copy(folder: Path):
    """The bundled model with every weight tensor replaced by random values of the same mean and spread,
    saved and loaded like the real one."""
    model = cospeech.load_model()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for v in model.denoiser.state_dict().values():
            if v.is_floating_point() and v.numel() > 1:
                v.copy_(torch.randn(v.shape, generator=g) * v.std() + v.mean())
    model.save(folder, half=True)
    return cospeech.load_model(folder)


def test_bundled_model_follows_its_audio(beat2_take):
    """The bundled model, on a window of its training take: motion from that window's speech is far nearer
    the recorded motion than motion from the same take's speech 30 s later."""
    own, other = audio_errors(cospeech.load_model(), beat2_take)
    assert own < AUDIO_MARGIN * other, (own, other)
    # and near the ground truth outright: less than half the variance of the normalised motion left
    # (the mean pose leaves all of it, ~1; random weights ~1.3)
    assert own < 0.5, own


def test_the_check_fails_for_random_weights(beat2_take, tmp_path):
    """The check above has power: a random-weight copy of the bundled model fails it."""
    broken = random_copy(tmp_path / "random")
    own, other = audio_errors(broken, beat2_take)
    assert not own < AUDIO_MARGIN * other, (own, other)


# -- the README's results tables ------------------------------------------------------------
TABLE_CMD = re.compile(r"`cospeech evaluate bundled --data cache/shared --split (\w+) --samples (\d+)`;\s+"
                       r"protocol `([0-9a-f]{16})`")


def readme_protocols() -> list[tuple[str, int, str]]:
    found = [(s, int(n), h) for s, n, h in TABLE_CMD.findall(README.read_text())]
    assert found, "README: no results table with its command and protocol hash"
    return found


def shared_split(cache):
    """`cache` with the split of tools/shared_split.csv, as the README's tables use."""
    split = dict(line.split(",") for line in SHARED_SPLIT.read_text().splitlines()[1:])
    takes = [replace(t, meta={**t.meta, "split": split.get(t.meta["id"], "train")}) for t in cache.takes]
    return replace(cache, takes=takes)


def test_readme_protocol_hashes_are_what_evaluate_computes(cache_dir):
    from cospeech.data import load_cache
    from cospeech.metrics.evaluate import evaluation_protocol, evaluation_takes, protocol_hash
    from cospeech.metrics.evaluator import MotionEvaluator, bundled_evaluator_path

    model = cospeech.load_model()
    evaluator = MotionEvaluator.load(bundled_evaluator_path())
    cache = shared_split(load_cache(cache_dir))
    for split, samples, quoted in readme_protocols():
        takes, short = evaluation_takes(cache, split, evaluator.cfg.window)
        protocol = evaluation_protocol(model, evaluator, takes, short, split, samples, 0, None)
        assert protocol_hash(protocol)[:16] == quoted, (split, samples)


def markdown_rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 1 and not set(cells[1]) <= set("-:"):
            rows[cells[0]] = cells[1:]
    return rows


def same_cell(a: str, b: str) -> bool:
    """Equal as printed, where values below 1e-9 (round-off of an exact zero) count as 0."""
    def norm(cell):
        return ["0" if abs(float(v)) < 1e-9 else v for v in cell.split(" ± ")]
    return norm(a) == norm(b)


@pytest.mark.slow
def test_readme_held_out_table_is_what_evaluate_produces(tmp_path, data_dir):
    """Re-run the README's held-out evaluation of the bundled model and compare every printed number."""
    from cospeech.cli.main import main
    from cospeech.metrics.evaluate import format_markdown

    split, samples, quoted = [p for p in readme_protocols() if p[0] == "test"][0]
    cache = tmp_path / "cache"
    for layout in ("beat2", "show"):
        assert main(["prepare", layout, str(data_dir / layout), "-o", str(cache),
                     "--split-file", str(SHARED_SPLIT)]) == 0
    out = tmp_path / "report.json"
    assert main(["evaluate", "bundled", "--data", str(cache), "--split", split, "--samples", str(samples),
                 "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["protocol_sha256"][:16] == quoted
    text = README.read_text()
    section = text[text.index(f"protocol `{quoted}`"):]
    table = section[section.index("| system |"):section.index("\n\n", section.index("| system |"))]
    readme, measured = markdown_rows(table), markdown_rows(format_markdown(report))
    assert readme.keys() == measured.keys() and readme["system"] == measured["system"]
    for system in readme.keys() - {"system"}:
        for name, a, b in zip(readme["system"], readme[system], measured[system]):
            assert same_cell(a, b), f"README {system} {name}: {a}, evaluate: {b}"


# -- outputs on failure and interruption ----------------------------------------------------
def test_atomic_write_leaves_nothing_on_error(tmp_path, monkeypatch):
    target = tmp_path / "out.txt"
    write_text(target, "old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"] and target.read_text() == "old"
    synced = []
    real_fsync = __import__("os").fsync
    monkeypatch.setattr("os.fsync", lambda fd: synced.append(Path(f"/proc/self/fd/{fd}").resolve()) or real_fsync(fd))
    write_text(target, "new")
    assert target.read_text() == "new"
    assert len(synced) == 2 and synced[0].name.startswith(".out.txt.") and synced[1] == tmp_path.resolve()


SLOW_WRITER = """
import sys, time
from cospeech.atomic import atomic_path, raise_on_sigterm
raise_on_sigterm()
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_text("partial")
    print("writing", flush=True)
    time.sleep(60)
"""


def test_sigterm_leaves_no_partial_file(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(tmp_path / "out.txt")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing", proc.stderr.read()
    assert len(list(tmp_path.iterdir())) == 1  # the hidden temporary, mid-write
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


def test_cli_turns_sigterm_into_an_unwinding_exit(capsys):
    from cospeech.cli.main import main

    before = signal.getsignal(signal.SIGTERM)
    try:
        assert main(["generate"]) == 1  # fails at once: no speech given
        handler = signal.getsignal(signal.SIGTERM)
        with pytest.raises(SystemExit) as exit_:
            handler(signal.SIGTERM, None)
        assert exit_.value.code == 143
    finally:
        signal.signal(signal.SIGTERM, before)


def test_preview_has_one_frame_per_motion_frame(tmp_path):
    """45 frames at 30 fps with 1.49 s of speech (T = round(1.49 × 30) ends after the speech)."""
    import imageio_ffmpeg

    from cospeech.export import write_preview
    from cospeech.motion import SmplxMotion

    rng = np.random.default_rng(0)
    for frames, seconds in ((45, 1.49), (31, 1.03)):
        motion = SmplxMotion(rng.normal(scale=0.1, size=(frames, 55, 3)), np.zeros((frames, 3)),
                             np.zeros((frames, 100)), 30.0)
        speech = (rng.normal(scale=0.1, size=int(seconds * 16000)).astype(np.float32), 16000)
        path = write_preview(motion, tmp_path / f"{frames}.mp4", speech)
        assert imageio_ffmpeg.count_frames_and_secs(str(path))[0] == frames
    assert sorted(p.name for p in tmp_path.iterdir()) == ["31.mp4", "45.mp4"]

