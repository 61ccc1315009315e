"""The benchmarks' plumbing: scaling, `--cli` and `--train-profile` (the numbers themselves are never
asserted against limits: no timed tests)."""

import json

import pytest

from cospeech.bench import BenchConfig, markdown_table, parse_spec, ratios, run_job, scaling
from cospeech.cli.main import main
from cospeech.errors import CospeechError


def test_backbone_specs():
    assert parse_spec("transformer") == ("transformer", {})
    assert parse_spec("mamba2:bidirectional=true:chunk=32:kernel=torch") == (
        "mamba2", {"bidirectional": True, "chunk": 32, "kernel": "torch"})
    assert parse_spec("none") == ("none", {})
    for bad in ("lstm", "mamba2:chunk", "none:width=3"):
        with pytest.raises(CospeechError):
            parse_spec(bad)
    with pytest.raises(CospeechError, match="modes"):
        BenchConfig(modes=("fit",))


@pytest.mark.parametrize("spec,mode", [("transformer", "train"), ("mamba2:bidirectional=true", "infer"), ("none", "train")])
def test_one_configuration_in_process(spec, mode):
    cfg = BenchConfig(width=32, depth=1, heads=2, batch=2, motion_dim=6, audio_dim=4, reps=2)
    job = json.loads(json.dumps({"config": cfg.__dict__, "spec": spec, "length": 20, "mode": mode}))
    res = run_job(job)
    assert res["backbone"] == spec and res["length"] == 20 and res["mode"] == mode
    assert len(res["times_s"]) == 2 and res["time_s"] > 0 and res["peak_mb"] >= 0


def test_ratios_scaling_and_table():
    cfg = BenchConfig(lengths=(100, 400), modes=("infer",))
    results = [{"backbone": b, "length": n, "mode": "infer", "time_s": t, "peak_mb": m, "live_mb": m / 2}
               for b, n, t, m in [("transformer", 100, 1.0, 100.0), ("mamba2", 100, 0.5, 20.0),
                                  ("transformer", 400, 8.0, 800.0), ("mamba2", 400, 2.0, 80.0)]]
    assert ratios(results, cfg) == [
        {"backbone": "mamba2", "vs": "transformer", "length": 100, "mode": "infer", "time_ratio": 0.5, "mem_ratio": 0.2,
         "live_ratio": 0.2},
        {"backbone": "mamba2", "vs": "transformer", "length": 400, "mode": "infer", "time_ratio": 0.25, "mem_ratio": 0.1,
         "live_ratio": 0.1},
    ]
    assert [s["time_ratio"] for s in scaling(results, cfg)] == [8.0, 4.0]
    table = markdown_table({"settings": cfg.__dict__, "results": results})
    assert "| infer | 400 | mamba2 | 2.00 | 80 | 40 | 0.25 | 0.10 | 0.10 |" in table


@pytest.mark.slow
def test_benchmark_command_end_to_end(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["benchmark", "--backbones", "transformer,mamba2", "--lengths", "16,32", "--width", "32",
                 "--depth", "1", "--heads", "2", "--batch", "2", "--reps", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == report
    assert len(report["results"]) == 8 and report["machine"]["cpu_count"] >= 1
    assert all(r["live_mb"] >= 0 for r in report["results"])


# -- benchmark --cli and --train-profile -------------------------------------------------------
def test_generate_phases_in_process(tmp_path):
    """The phases of a generate run, stamped in order by the real generate path; files written."""
    from cospeech.bench_cli import run_phases
    from cospeech.cli.main import example_speech

    res = run_phases(str(example_speech()), str(tmp_path), formats=("npz", "bvh"))
    stamps = res["stamps"]
    assert list(stamps) == ["imports", "model_load", "read_audio", "scheduler_import", "features", "sampling", "decode",
                            "write_npz", "write_bvh"]
    assert list(stamps.values()) == sorted(stamps.values())
    assert res["speech_seconds"] == pytest.approx(4.0, abs=0.05)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arctic_a0007.bvh", "arctic_a0007.npz"]


def test_phase_medians_ratios_and_preview_ratio(monkeypatch):
    from cospeech import bench_cli

    runs = iter([{"seconds": {"imports": 2.0, "features": 0.1, "sampling": 1.0, "decode": 0.1, "write_mp4": 1.8},
                  "speech_seconds": 4.0, "torch_dynamo_imported": False},
                 {"seconds": {"imports": 4.0, "features": 0.3, "sampling": 3.0, "decode": 0.1, "write_mp4": 3.4},
                  "speech_seconds": 4.0, "torch_dynamo_imported": False},
                 {"seconds": {"imports": 3.0, "features": 0.2, "sampling": 2.0, "decode": 0.2, "write_mp4": 6.0},
                  "speech_seconds": 4.0, "torch_dynamo_imported": False}])
    monkeypatch.setattr(bench_cli, "_phases_once", lambda audio: next(runs))
    row = bench_cli.phases("speech.wav", reps=3, torch_s=2.0)
    assert row["seconds"] == {"imports": 3.0, "features": 0.2, "sampling": 2.0, "decode": 0.1, "write_mp4": 3.4}
    assert row["ratio_to_import_torch"]["imports"] == 1.5 and row["ratio_to_import_torch"]["write_mp4"] == 1.7
    assert row["generation_s"] == pytest.approx(2.4)  # median of 1.2, 3.4, 2.4
    assert row["preview_ratio"] == pytest.approx(1.5)  # median of 1.5, 1.0, 2.5
    assert row["torch_dynamo_imported"] is False


def test_schedulers_load_without_torch_dynamo():
    """diffusers' schedulers come without torch._dynamo (about an `import torch` of its own),
    which stays importable afterwards."""
    import subprocess
    import sys

    from cospeech.bench_cli import child_env

    code = ("import sys, torch\n"
            "from cospeech.diffusion import DiffusionConfig, sample_scheduler, train_scheduler\n"
            "sample_scheduler(DiffusionConfig()); train_scheduler(DiffusionConfig())\n"
            "assert 'torch._dynamo' not in sys.modules, 'torch._dynamo was imported'\n"
            "import torch._dynamo\n"
            "assert sys.modules['torch._dynamo'] is not None\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env())
    assert proc.returncode == 0, proc.stderr


def test_training_profile_of_a_few_steps(cache_dir):
    """Every part of the loop is clocked, shares add up, and the loop is left unpatched."""
    import torch

    from cospeech.bench_train import PARTS, profile_preset
    from cospeech.train import loop

    backward = torch.Tensor.backward
    res = profile_preset(str(cache_dir), "tiny", 3)
    assert res["calls"] == {"data": 3, "forward": 3, "backward": 3, "clip": 3, "optimiser": 3, "ema": 3, "checkpoint": 1,
                            "dropout": 3 * 2}  # one nn.Dropout per layer (the tiny preset's p is 0)
    assert all(res["seconds"][p] >= 0 for p in PARTS) and res["seconds"]["forward"] > 0
    assert sum(res["seconds"].values()) == pytest.approx(res["loop_s"], abs=2e-3)
    assert sum(res["share"].values()) == pytest.approx(1.0, abs=0.01)
    assert res["dropout_s"] <= res["seconds"]["forward"]
    assert res["checkpoint_share_at_cadence"] <= res["share"]["checkpoint"]
    assert torch.Tensor.backward is backward and not hasattr(loop.training_loss, "__wrapped__")


def test_cli_and_train_profile_are_exclusive(capsys):
    with pytest.raises(SystemExit):
        main(["benchmark", "--cli", "--train-profile"])
    assert "not allowed with" in capsys.readouterr().err


@pytest.mark.slow
def test_benchmark_cli_end_to_end(tmp_path, capsys):
    """`cospeech benchmark --cli` on the 4 s example, one repetition: every figure positive."""
    out = tmp_path / "cli.json"
    assert main(["benchmark", "--cli", "--reps", "1", "--long", "", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == report
    assert report["import_torch_s"] > 0
    for name in ("help", "info", "generate_npz_bvh_warm", "generate_npz_bvh_first_run",
                 "generate_npz_bvh_first_run_installed"):
        assert report["commands"][name]["seconds"] > 0 and report["commands"][name]["ratio_to_import_torch"] > 0
    assert report["commands"]["generate_npz_bvh_first_run"]["import_torch_s"] > 0
    row = report["phases"]["example_4s"]
    assert set(row["seconds"]) == {"imports", "model_load", "read_audio", "scheduler_import", "features", "sampling",
                                   "decode", "write_npz", "write_bvh", "write_mp4", "total"}
    assert all(v > 0 for v in row["seconds"].values()) and row["generation_s"] > 0 and row["preview_ratio"] > 0
    assert row["torch_dynamo_imported"] is False
    assert list(report["phases"]) == ["example_4s"]
    assert report["targets"]["generate_warm_ratio"]["value"] > 0
    assert report["targets"]["preview_ratio_62s"]["met"] is None


def test_benchmark_cli_says_why_the_long_take_is_missing(tmp_path, monkeypatch):
    from cospeech import bench_cli

    monkeypatch.setattr(bench_cli, "phases", lambda audio, reps, torch_s: {"preview_ratio": 1.0})
    monkeypatch.setattr(bench_cli, "_wall", lambda cmd, env: 1.0)
    monkeypatch.setattr(bench_cli, "_first_run", lambda cmd, installed: 2.0)
    report = bench_cli.run_cli_benchmark(reps=1, long_take=tmp_path / "missing.wav", log=lambda line: None)
    assert "not found" in report["phases"]["take_62s"]["skipped"]
    assert report["commands"]["generate_npz_bvh_first_run"]["ratio_to_first_import_torch"] == 1.0


@pytest.mark.slow
def test_benchmark_train_profile_command(cache_dir, tmp_path):
    out = tmp_path / "train.json"
    assert main(["benchmark", "--train-profile", "--train-data", str(cache_dir), "--presets", "tiny",
                 "--train-steps", "2", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["presets"]
    assert row["preset"] == "tiny" and row["loop_s"] > 0 and row["seconds"]["forward"] > 0
