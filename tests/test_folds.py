"""Folds over the shared clips: every frame held out once, training never sees its fold's held-out
frames or guard band, the aggregation is exact, the protocol hash follows the fold definition and
the training configuration; `--set` replaces preset fields and rejects unknown keys."""

import json
import math
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cospeech.cli.main import main
from cospeech.data import load_cache
from cospeech.errors import CospeechError
from cospeech.metrics.evaluate import protocol_hash
from cospeech.metrics.evaluator import MotionEvaluator, bundled_evaluator_path
from cospeech.metrics.folds import (HELD_OUT, FoldsConfig, aggregate, define_folds, fold_caches, folds_protocol,
                                    format_folds, mean_ci95, run_folds)
from cospeech.train import get_preset, train
from cospeech.train.presets import parse_settings

from .conftest import BEAT2_TAKE

# Student t, 97.5% quantiles (printed tables: 12.706, 4.303, 3.182)
T975_1, T975_2, T975_3 = 12.706204736174698, 4.302652729749464, 3.182446305284263


@pytest.fixture(scope="module")
def cache(cache_dir):
    return load_cache(cache_dir)


@pytest.fixture(scope="module")
def evaluator():
    return MotionEvaluator.load(bundled_evaluator_path())


def origin_frames(take) -> np.ndarray:
    """The frames of the recording a (possibly cut) take holds."""
    lo, hi = take.meta.get("range", (0, take.n_frames))
    return np.arange(lo, hi)


@pytest.mark.parametrize("k", [2, 5, 12])
def test_every_frame_is_held_out_exactly_once_and_never_trained_on(cache, k):
    folds = define_folds(cache, k, segment_s=10.0, guard_s=2.0)
    assert len(folds) == k and all(f.guard == 60 for f in folds)
    held = {t.meta["id"]: np.zeros(t.n_frames, int) for t in cache.takes}
    for fold in folds:
        train, ev = fold_caches(cache, fold)
        out = {t.meta["id"]: np.zeros(t.n_frames, bool) for t in cache.takes}
        for p in fold.held_out:
            held[p.take][p.start : p.end] += 1
            out[p.take][max(0, p.start - 60) : p.end + 60] = True
        window = 60
        for take_index, start in train.windows(window, 10):
            piece = train.takes[take_index]
            source = piece.meta.get("source_id", piece.meta["id"])
            frames = origin_frames(piece)[start : start + window]  # what the sampler reads of this window
            assert len(frames) and not out[source][frames].any(), (fold.index, piece.meta["id"], start)
        trained = sum(t.n_frames for t in train.takes)
        assert trained == sum(int((~o).sum()) for o in out.values())  # everything outside is trained on
        held_clips = [t for t in ev.takes if t.meta["split"] == HELD_OUT]
        assert [(t.meta.get("source_id", t.meta["id"]), *origin_frames(t)[[0, -1]]) for t in held_clips] == \
            [(p.take, p.start, p.end - 1) for p in fold.held_out]
        assert ev.takes[len(held_clips):] == train.takes  # the controls draw from the training part only
    assert all((h == 1).all() for h in held.values())
    assert define_folds(cache, k) == folds  # deterministic


def test_folds_are_short_takes_whole_and_long_takes_in_segments(cache):
    folds = define_folds(cache, 12)
    parts = [p for f in folds for p in f.held_out]
    beat2 = [(p.start, p.end) for p in parts if p.take == BEAT2_TAKE]
    assert beat2 == [(0, 318), (318, 635), (635, 953), (953, 1271), (1271, 1588), (1588, 1906)]
    show = [p for p in parts if p.take != BEAT2_TAKE]
    assert len(show) == 6 and all((p.start, p.end) == (0, 300) for p in show)
    assert [len(f.held_out) for f in define_folds(cache, 5)] == [3, 3, 2, 2, 2]  # 12 parts dealt round-robin
    for k in (1, 13):
        with pytest.raises(CospeechError, match="between 2 and 12"):
            define_folds(cache, k)


def test_excluded_frames_leave_views_that_decode_like_the_take(cache, cache_dir):
    take = next(t for t in cache.takes if t.meta["id"] == BEAT2_TAKE)
    cut = load_cache(cache_dir, exclude={BEAT2_TAKE: [(500, 800), (700, 900)]})
    pieces = [t for t in cut.takes if t.meta.get("source_id") == BEAT2_TAKE]
    assert [p.meta["id"] for p in pieces] == [f"{BEAT2_TAKE}[0:500]", f"{BEAT2_TAKE}[900:1906]"]
    assert len(cut.takes) == len(cache.takes) + 1 and cut.data_hash != cache.data_hash
    second = pieces[1]
    assert np.array_equal(second.motion, take.motion[900:])
    # a segment of the loaded cache is a view, not a copy
    seg = cache.segment(take, 900, 1906)
    assert np.shares_memory(seg.motion, take.motion) and np.shares_memory(seg.audio, take.audio)
    # the root starts where the take's root is at that frame; onsets count from the segment's start
    whole = cache.spec.decode(take.motion, cache.fps, origin=take.meta["origin"])
    part = cache.spec.decode(seg.motion, cache.fps, origin=seg.meta["origin"])
    assert np.abs(whole.trans[900:] - part.trans).max() < 1e-5
    assert np.allclose(seg.onsets, take.onsets[take.onsets >= 30.0] - 30.0) and len(seg.onsets) > 10
    # a segment of a segment knows where it sits in the recording
    inner = cache.segment(seg, 100, 200)
    assert inner.meta["range"] == [1000, 1100] and np.array_equal(inner.motion, take.motion[1000:1100])
    gone = cache.excluding({t.meta["id"]: [(0, t.n_frames)] for t in cache.takes[1:]})
    assert [t.meta["id"] for t in gone.takes] == [cache.takes[0].meta["id"]]
    for bad, msg in [({"nope": [(0, 1)]}, "no such take"), ({BEAT2_TAKE: [(5, 5)]}, "cannot exclude"),
                     ({BEAT2_TAKE: [(0, 4000)]}, "cannot exclude")]:
        with pytest.raises(CospeechError, match=msg):
            cache.excluding(bad)


def test_mean_and_interval_over_folds_are_exact():
    r = mean_ci95([1.0, 2.0, 3.0, 4.0])
    assert r["mean"] == 2.5 and r["n"] == 4
    assert r["ci95"] == pytest.approx(T975_3 * math.sqrt(5 / 3) / 2, rel=1e-12)  # sample sd √(5/3), √n = 2
    r = mean_ci95([2.0, float("nan"), 4.0])  # a fold without the metric is left out
    assert (r["mean"], r["n"]) == (3.0, 2) and r["ci95"] == pytest.approx(T975_1 * math.sqrt(2) / math.sqrt(2), rel=1e-12)
    assert mean_ci95([5.0, 5.0, 5.0]) == {"mean": 5.0, "ci95": 0.0, "n": 3}
    one = mean_ci95([7.0])
    assert one["mean"] == 7.0 and math.isnan(one["ci95"])


def test_aggregate_known_fold_values():
    folds = [
        {"results": {"model": {"FGD": 10.0, "Jerk": 1.0}, "shuffled audio": {"FGD": 12.0, "Jerk": 2.0}},
         "verdict": {"FGD vs shuffled audio": {"model_better": True}}},
        {"results": {"model": {"FGD": 20.0, "Jerk": 1.0}, "shuffled audio": {"FGD": 18.0, "Jerk": 4.0}},
         "verdict": {"FGD vs shuffled audio": {"model_better": False}}},
        {"results": {"model": {"FGD": 30.0, "Jerk": 1.0}, "shuffled audio": {"FGD": 36.0, "Jerk": 6.0}},
         "verdict": {"FGD vs shuffled audio": {"model_better": True}}},
    ]
    agg = aggregate(folds)
    fgd = agg["results"]["model"]["FGD"]
    assert fgd["mean"] == 20.0 and fgd["values"] == [10.0, 20.0, 30.0]
    assert fgd["ci95"] == pytest.approx(T975_2 * 10.0 / math.sqrt(3), rel=1e-12)
    assert agg["results"]["model"]["Jerk"] == {"mean": 1.0, "ci95": 0.0, "n": 3, "values": [1.0, 1.0, 1.0]}
    sh = agg["results"]["shuffled audio"]
    assert sh["FGD"]["mean"] == 22.0 and sh["Jerk"]["ci95"] == pytest.approx(T975_2 * 2.0 / math.sqrt(3), rel=1e-12)
    assert agg["verdict"] == {"FGD vs shuffled audio": {"model_better": 2, "folds": 3}}


def test_protocol_hash_follows_fold_definition_and_training_only(cache, evaluator):
    base = FoldsConfig(k=4, preset="tiny", train_steps=20, eval_at=(10,))

    def digest(cfg=base, k=None):
        cfg = replace(cfg, k=k or cfg.k)
        return protocol_hash(folds_protocol(cache, define_folds(cache, cfg.k, cfg.segment_s, cfg.guard_s), cfg, evaluator))

    h = digest()
    assert digest() == h
    same = [replace(base, eval_at=(10, 20)),  # the last step is always evaluated
            replace(base, settings={"denoiser.dropout": "0.0"}),  # tiny's own value
            replace(base, settings={"train.checkpoint_every": "7", "train.log_every": 3}),  # change no weight
            replace(base, sample_steps=get_preset("tiny").diffusion.sample_steps)]
    assert all(digest(cfg) == h for cfg in same)
    changed = [replace(base, k=5), replace(base, guard_s=1.0), replace(base, segment_s=15.0),
               replace(base, train_steps=30), replace(base, eval_at=(5,)), replace(base, preset="default"),
               replace(base, settings={"denoiser.dropout": "0.2"}), replace(base, settings={"diffusion.prediction": "epsilon"}),
               replace(base, settings={"train.seed": 1}), replace(base, seed=1), replace(base, samples=2),
               replace(base, sample_steps=3)]
    hashes = [digest(cfg) for cfg in changed]
    assert h not in hashes and len(set(hashes)) == len(hashes)
    assert digest(replace(base, settings={"diffusion.velocity_weight": "2"})) == \
        digest(replace(base, settings={"diffusion.velocity_weight": 2.0}))


def test_set_replaces_preset_fields_and_rejects_unknown_keys(capsys, tmp_path, cache_dir):
    p = get_preset("default").override(parse_settings(
        ["diffusion.prediction=epsilon", "denoiser.dropout=0.2", "diffusion.velocity_weight=2", "train.window=none",
         'denoiser.mixer={"chunk": 32}']))
    assert p.diffusion.prediction == "epsilon" and p.diffusion.velocity_weight == 2.0 and p.denoiser["dropout"] == 0.2
    assert p.train.window is None and p.denoiser["mixer"] == {"chunk": 32}
    assert get_preset("default").diffusion.prediction == "sample"  # presets themselves do not change
    for items, msg in [(["denoiser.dropuot=0.2"], "unknown setting; denoiser has"),
                       (["model.width=3"], "unknown setting; keys start with train, diffusion, denoiser"),
                       (["denoiser.motion_dim=3"], "unknown setting"),  # comes from the data
                       (["train.steps=many"], "not a valid int"), (["diffusion.prediction=x0"], "prediction must be"),
                       (["dropout"], "expected key=value")]:
        with pytest.raises(CospeechError, match=msg):
            get_preset("default").override(parse_settings(items))
    for argv in (["train", "--data", str(cache_dir), "-o", str(tmp_path / "r"), "--set", "denoiser.nope=1"],
                 ["evaluate", "--folds", "2", "--data", str(cache_dir), "-o", str(tmp_path / "f"), "--set", "train.nope=1"]):
        assert main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("cospeech: error: --set") and "\n" not in err
    assert not (tmp_path / "r" / "checkpoints").exists() and not (tmp_path / "f" / "fold-0").exists()


def test_train_records_set_and_resume_keeps_it(cache, tmp_path):
    run = tmp_path / "run"
    one = cache.excluding({BEAT2_TAKE: [(120, 1906)], **{t.meta["id"]: [(0, t.n_frames)] for t in cache.takes[1:]}})
    gen = train(one, run, preset="tiny", steps=1, progress=False, settings={"denoiser.dropout": "0.2"})
    spec = json.loads((run / "run.json").read_text())
    assert spec["set"] == {"denoiser.dropout": 0.2} and spec["denoiser"]["dropout"] == 0.2
    assert gen.cfg.denoiser.dropout == 0.2
    with pytest.raises(CospeechError, match="a resumed run keeps its settings"):
        train(one, run, preset="tiny", steps=2, resume=True, progress=False, settings={"denoiser.dropout": "0.3"})


def test_a_fold_trained_as_the_protocol_says_passes_its_check(cache, tmp_path):
    """The run a fold trains records what the protocol's training record says (a run.json field
    the record leaves out, such as one gradient pass per step, must not read as a difference);
    a run with another setting is refused."""
    from dataclasses import replace as with_

    from cospeech.metrics.folds import _check_run, training_record

    cfg = FoldsConfig(k=2, preset="tiny", train_steps=1, eval_at=(), samples=1, sample_steps=1)
    fold = define_folds(cache, 2)[0]
    part = cache.excluding(fold.exclusions(cache))
    run = tmp_path / "fold"
    train(part, run, preset="tiny", steps=1, progress=False)
    _check_run(run, training_record(cache, cfg))
    with pytest.raises(CospeechError, match="other settings than the folds protocol"):
        _check_run(run, training_record(cache, with_(cfg, settings={"denoiser.dropout": "0.2"})))


def test_folds_of_a_face_only_preset_measure_the_face(cache, evaluator, tmp_path):
    """DiffSpeaker generates jaw and expression only: each fold's evaluation and the folds table
    hold the face metrics, and the protocol records the generated parts (one step, two folds)."""
    cfg = FoldsConfig(k=2, preset="diffspeaker-tiny", train_steps=1, eval_at=(), samples=1, sample_steps=1)
    report = run_folds(cache, tmp_path / "folds", cfg, evaluator, progress=False, log=lambda line: None)
    face = ["FED", "FaceMSE", "FaceLVD", "LVE-FLAME", "FDD-FLAME"]
    assert list(report["metrics"]) == face
    assert report["protocol"]["evaluation"]["generated_parts"] == ["jaw", "expression"]
    assert set(report["steps"]["1"]["results"]["model"]) == set(face)
    assert set(report["steps"]["1"]["verdict"]) == {f"{m} vs {c}" for m in ("FED", "FaceMSE")
                                                    for c in ("random real clip", "shuffled audio")}
    text = format_folds(report)
    assert "FaceMSE" in text and "FGD" not in text


def test_evaluate_options_go_with_their_mode(capsys, cache_dir, tmp_path):
    for argv, msg in [(["evaluate", "--data", str(cache_dir)], "name the model"),
                      (["evaluate", "bundled", "--data", str(cache_dir), "--train-steps", "5"], "--train-steps trains models"),
                      (["evaluate", "bundled", "--folds", "2", "--data", str(cache_dir), "-o", str(tmp_path)], "takes no model"),
                      (["evaluate", "--folds", "2", "--data", str(cache_dir)], "needs -o OUT"),
                      (["evaluate", "--folds", "2", "--data", str(cache_dir), "-o", str(tmp_path), "--split", "test"],
                       "takes no --split"),
                      (["evaluate", "--folds", "2", "--data", str(cache_dir), "-o", str(tmp_path), "--eval-at", "5,x"],
                       "comma-separated"),
                      (["evaluate", "--folds", "2", "--data", str(cache_dir), "-o", str(tmp_path), "--train-steps", "5",
                        "--eval-at", "9"], "within 1..5")]:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip()
        assert msg in err and "\n" not in err


def fold_values(out, fold, step, system, metric):
    report = json.loads((out / f"fold-{fold}" / f"eval-step-{step:08d}.json").read_text())
    return report["results"][system][metric]["mean"], report


@pytest.mark.slow
def test_two_folds_end_to_end_resume_and_refusal(cache, evaluator, tmp_path):
    """Tiny preset, 4 steps, 2 folds, evaluated at steps 2 and 4 (about 30 s on 2 CPU cores)."""
    out = tmp_path / "folds"
    cfg = FoldsConfig(k=2, preset="tiny", train_steps=4, eval_at=(2,), samples=1, sample_steps=2)
    report = run_folds(cache, out, cfg, evaluator, progress=False, log=lambda line: None)
    assert list(report["steps"]) == ["2", "4"] and len(report["folds"]) == 2
    folds = define_folds(cache, 2)
    for fold in folds:
        run = out / f"fold-{fold.index}"
        assert sorted(c.name for c in (run / "checkpoints").iterdir()) == ["step-00000002", "step-00000004"]
        _, ev = fold_values(out, fold.index, 4, "model", "FGD")
        assert [t["frames"] for t in ev["protocol"]["takes"]] == [p.frames for p in fold.held_out]
        assert ev["protocol"]["split"] == HELD_OUT
    for step in (2, 4):
        for system in ("model", "shuffled audio", "random real clip"):
            for metric in ("FGD", "BeatAlign", "Jerk"):
                values = [fold_values(out, f, step, system, metric)[0] for f in (0, 1)]
                agg = report["steps"][str(step)]["results"][system][metric]
                assert agg["values"] == values and agg["mean"] == pytest.approx(np.mean(values), rel=1e-12)
                assert agg["ci95"] == pytest.approx(T975_1 * abs(values[0] - values[1]) / 2, rel=1e-9)
    assert report["steps"]["4"]["results"]["ground truth"]["FGD"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert report["steps"]["2"]["results"]["model"]["FGD"]["values"] != report["steps"]["4"]["results"]["model"]["FGD"]["values"]
    assert json.loads((out / "report.json").read_text())["protocol_sha256"] == report["protocol_sha256"]
    text = format_folds(report)
    assert report["protocol_sha256"][:16] in text and "model against training steps" in text

    # an interrupted run continues: fold 1 loses its last checkpoint and evaluation, resumes from step 2
    stamp = (out / "fold-0" / "checkpoints" / "step-00000004" / "model.safetensors").stat().st_mtime_ns
    shutil.rmtree(out / "fold-1" / "checkpoints" / "step-00000004")
    (out / "fold-1" / "eval-step-00000004.json").unlink()
    again = run_folds(cache, out, cfg, evaluator, progress=False, log=lambda line: None)
    assert again["steps"] == report["steps"]  # exact resume: the same weights, the same numbers
    assert (out / "fold-0" / "checkpoints" / "step-00000004" / "model.safetensors").stat().st_mtime_ns == stamp

    with pytest.raises(CospeechError, match="another protocol"):
        run_folds(cache, out, replace(cfg, settings={"denoiser.dropout": "0.2"}), evaluator, progress=False,
                  log=lambda line: None)


def test_readme_folds_protocol_hash_is_what_folds_compute(cache, evaluator):
    """The README's folds table names the protocol these settings give on the shared clips."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    found = re.findall(r"`cospeech evaluate --folds (\d+) --data cache/shared --preset (\w+) --train-steps (\d+) "
                       r"--eval-at ([\d,]+)`;\s+folds protocol `([0-9a-f]{16})`", readme)
    assert found, "README: no folds table with its command and protocol hash"
    for k, preset, steps, eval_at, quoted in found:
        cfg = FoldsConfig(k=int(k), preset=preset, train_steps=int(steps), eval_at=tuple(map(int, eval_at.split(","))))
        assert protocol_hash(folds_protocol(cache, define_folds(cache, cfg.k), cfg, evaluator))[:16] == quoted
