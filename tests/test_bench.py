"""The scaling benchmark's plumbing (the numbers themselves are never asserted: no timed tests)."""

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
