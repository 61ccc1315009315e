"""The command line as a user meets it: the bundled model on real speech, and bad input."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from cospeech.cli.main import example_speech, main

from .conftest import BEAT2, SHOW_CLIPS, SPEECH, need_data


def frames_of(npz_path):
    with np.load(npz_path) as d:
        assert set(d.files) >= {"poses", "expressions", "trans", "betas", "mocap_frame_rate"}
        assert d["poses"].shape[1] == 165 and d["expressions"].shape[1] == 100 and d["trans"].shape[1] == 3
        assert np.isfinite(d["poses"]).all()
        return len(d["poses"]), float(d["mocap_frame_rate"])


def test_generate_example_writes_three_files(tmp_path, capsys):
    assert main(["generate", "--example", "-o", str(tmp_path), "--steps", "5"]) == 0
    stem = example_speech().stem
    assert {p.name for p in tmp_path.iterdir()} == {f"{stem}.npz", f"{stem}.bvh", f"{stem}.mp4"}
    n, fps = frames_of(tmp_path / f"{stem}.npz")
    assert n == round(sf.info(example_speech()).duration * fps)
    assert "frames" in capsys.readouterr().out


def test_generate_real_speech_of_every_format(tmp_path):
    """16 kHz float (BEAT2), 16 kHz int16 (BEAT2 take 2, CMU ARCTIC), 22 kHz stereo int16 (SHOW)."""
    need_data()
    short = tmp_path / "in"
    short.mkdir()
    # the 60 s BEAT2 recordings are cut to 6 s (same format) to keep the suite fast;
    # the full-length run is the benchmark in the README
    inputs = []
    for src in (BEAT2 / "wave16k" / "2_scott_0_1_1.wav", BEAT2 / "wave16k" / "2_scott_0_2_2.wav"):
        info = sf.info(src)
        data, sr = sf.read(src, frames=6 * info.samplerate, dtype="float32" if info.subtype == "FLOAT" else "int16")
        sf.write(short / src.name, data, sr, subtype=info.subtype)
        inputs.append(short / src.name)
    inputs += [SHOW_CLIPS[0].with_suffix(".wav"), SPEECH / "arctic_a0009.wav"]
    out = tmp_path / "out"
    assert main(["generate", *map(str, inputs), "-o", str(out), "--steps", "5", "--formats", "npz,bvh"]) == 0
    for src in inputs:
        n, fps = frames_of(out / f"{src.stem}.npz")
        assert abs(n - round(sf.info(src).duration * fps)) <= 1, src
        bvh = (out / f"{src.stem}.bvh").read_text()
        assert f"Frames: {n}\n" in bvh and bvh.count("JOINT") == 54


def bad_inputs(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all\n" * 50)
    zero = tmp_path / "zero.wav"
    sf.write(zero, np.zeros(0, np.float32), 16000)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(32000, np.int16), 16000)
    return {"empty": empty, "not audio": text, "zero-length": zero, "silent": silent, "missing": tmp_path / "nope.wav"}


@pytest.mark.parametrize("case", ["empty", "not audio", "zero-length", "silent", "missing"])
def test_bad_input_is_one_line_and_nonzero(tmp_path, capsys, case):
    path = bad_inputs(tmp_path)[case]
    assert main(["generate", str(path), "-o", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("cospeech: error:") and len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert not list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


def test_one_bad_input_does_not_lose_the_others(tmp_path, capsys):
    bad = bad_inputs(tmp_path)["silent"]
    out = tmp_path / "out"
    assert main(["generate", str(bad), "--example", "-o", str(out), "--steps", "3", "--formats", "npz"]) == 1
    assert (out / f"{example_speech().stem}.npz").exists()
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_console_script_exit_code_and_no_traceback(tmp_path):
    """Through a real process, as a user runs it."""
    bad = bad_inputs(tmp_path)["not audio"]
    proc = subprocess.run([sys.executable, "-m", "cospeech", "generate", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("cospeech: error:") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_other_bad_arguments(tmp_path, capsys):
    assert main(["generate", "--example", "--speaker", "nobody", "-o", str(tmp_path)]) == 1
    assert "unknown speaker" in capsys.readouterr().err
    assert main(["generate", "-o", str(tmp_path)]) == 1
    assert "no speech given" in capsys.readouterr().err
    assert main(["generate", "--example", "-m", str(tmp_path / "nomodel")]) == 1
    assert "no such model" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), "-o", str(tmp_path / "run")]) == 1
    assert "not a feature cache" in capsys.readouterr().err
    assert main(["prepare", "show", str(tmp_path / "nope"), "-o", str(tmp_path / "c")]) == 1
    assert "no such folder" in capsys.readouterr().err
    assert main(["generate", "--example", "--jump-count", "-1", "-o", str(tmp_path)]) == 1
    assert "jump count must be a whole number ≥ 0" in capsys.readouterr().err
    assert main(["generate", "--example", "--jump-count", "1", "--sampler", "dpmsolver", "-o", str(tmp_path)]) == 1
    assert "dpmsolver cannot step back" in capsys.readouterr().err


def test_resampling_from_the_command_line(tmp_path):
    """--jump-count reaches the sampler: the motion differs from plain sampling, and is finite."""
    outs = {}
    for jumps in (0, 1):
        out = tmp_path / str(jumps)
        assert main(["generate", "--example", "--steps", "2", "--joiner", "foppas", "--jump-count", str(jumps),
                     "--formats", "npz", "-o", str(out)]) == 0
        with np.load(out / "arctic_a0007.npz") as d:
            outs[jumps] = d["poses"]
    assert np.isfinite(outs[1]).all() and not np.allclose(outs[0], outs[1], atol=1e-4)


def test_info_describes_the_bundled_model(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "transformer" in out and "speakers:" in out


def test_help_imports_no_torch():
    """`cospeech --help` builds only the subcommand names: it must not pay for torch."""
    code = ("import sys\nfrom cospeech.cli.main import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
            "print(sorted(m for m in ('torch', 'diffusers', 'librosa') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    assert "generate" in proc.stdout and "train" in proc.stdout
