"""What the commands tell a user: `cospeech info` (configuration, data, metrics, licence), each
command's `--help` (what it reads and writes), and the progress of long generations."""

import argparse
from pathlib import Path

import numpy as np
import pytest

from cospeech.cli.main import ABOUT, build_parser, main
from cospeech.model_info import card_section, describe_model
from cospeech.train import train


def test_info_of_the_bundled_model_names_its_data_metrics_and_licence(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    sections = [line for line in out.splitlines() if line and not line.startswith(" ")]
    assert [s.split(":")[0] for s in sections] == ["model", "config", "data", "metrics", "licence"]
    assert "3.23 M parameters" in out and "3406 frames (1.9 min)" in out
    assert "2.1829 at the first step -> 0.4050 at step 2500" in out
    assert "non-commercial research only" in out and "CC BY-NC 4.0" in out


def test_info_of_a_trained_run(cache_dir, tmp_path, capsys):
    run = tmp_path / "run"
    gen = train(cache_dir, run, preset="tiny", steps=3, progress=False, log_every=1)
    d = describe_model(run)
    assert d["data"]["takes"] == 7 and d["data"]["frames"] == 3706 and d["data"]["datasets"] == ["beat2", "show"]
    assert d["training"] == {"preset": "tiny", "step": 3, "world_size": 1, "precision": "32-true", "steps": 3,
                             "batch_size": 8, "lr": 0.001, "seed": 0, "grad_accum": 1}
    assert d["metrics"]["logged_steps"] == 3 and d["metrics"]["loss_smooth"] == gen.info["training"]["loss_smooth"]
    assert d["config"]["parameters"] == sum(p.numel() for p in gen.denoiser.parameters())
    assert d["licence"].splitlines()[0].startswith("beat2: BEAT2 (EMAGE): CC BY-NC 4.0")
    assert main(["info", str(run)]) == 0
    out = capsys.readouterr().out
    assert "7 takes, 3706 frames (2.1 min)" in out and "metrics.jsonl: 3 rows to step 3" in out
    assert main(["info", str(run), "-m", str(tmp_path)]) == 1
    assert "two models named" in capsys.readouterr().err


def test_card_section():
    card = "# t\n## Licence\nCC BY 4.0\n\nmore\n## Next\nx\n"
    assert card_section(card, "Licence") == "CC BY 4.0\n\nmore" and card_section(card, "Absent") == ""


def test_every_command_says_what_it_reads_and_writes(capsys):
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(commands) == set(ABOUT)
    for name in commands:
        with pytest.raises(SystemExit) as stop:
            main([name, "--help"])
        assert stop.value.code == 0
        out = capsys.readouterr().out
        assert "\nreads:  " in out and "\nwrites: " in out, name


def test_long_generation_reports_each_step(model, monkeypatch):
    """A generation over two segments calls on_step once per denoising step of each (and once for the
    starting noise), ending at its total, and gives the same motion as without the callback."""
    from cospeech import generator

    monkeypatch.setattr(generator, "SEGMENT_WINDOWS", 3)  # segments of 3 windows: speech of 10 s is "long"
    window, overlap = model.cfg.window, model.cfg.overlap
    frames = window + (generator.SEGMENT_WINDOWS - 1) * (window - overlap) + 100  # one segment and a bit
    audio = np.random.default_rng(0).standard_normal((frames, model.cfg.audio.dim)).astype(np.float32)
    calls = []
    with_bar = model.sample_features(audio, seed=3, steps=1, on_step=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 4) for i in range(1, 5)]  # 2 segments × (1 step + the noise)
    np.testing.assert_array_equal(with_bar, model.sample_features(audio, seed=3, steps=1))
    calls.clear()  # with resampling: after steps 1 and 2 the sampler goes back one step, once each
    model.sample_features(audio[:200], seed=3, steps=3, jump_length=1, jump_count=1,
                          on_step=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 8) for i in range(1, 9)]  # 1 + 3 steps + 2 jumps × (renoise + 1 step again)


def test_readme_documents_every_command():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    missing = [name for name in ABOUT if f"### `cospeech {name}`" not in readme]
    assert not missing, f"README: no section for {missing}"
