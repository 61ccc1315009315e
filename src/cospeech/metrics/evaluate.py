"""`cospeech evaluate`: a metric table whose protocol is data, with controls in every table.

For every clip of a split the model generates motion from the clip's speech, N times (seeds
0..N-1); each metric is computed over the whole split for each repetition, then reported as
mean and 95% interval over repetitions (DiffSpeaker-style repeated runs). The same metrics are
computed for controls:
- ground truth against itself: the floor of distribution distances;
- mean pose: the training mean, frozen;
- random real clip: real motion of the same length from another take (unrelated to the speech);
- shuffled audio: the model run on another clip's speech (another take's when the split has one).
The model is conditioned on each take's speaker when it knows that speaker.
A model that does not beat the random-real-clip and shuffled-audio controls is reported as such.

The protocol says what was measured and how: the extractor (sha256 and windows), the split and
its takes, fps, samples and their seeds, sampler, steps and guidance, and the metric settings.
Its sha256 identifies a comparable evaluation: two tables are comparable exactly when their
protocol hashes agree, whichever models they measure. The run record says what was measured:
the model's sha256, the data hash of the takes' source files, the package version. Both are
printed with the table and stored in the JSON; only the protocol is hashed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from .._version import __version__
from ..data import FeatureCache
from ..artifacts import sha256_file
from ..data.cache import CachedTake, data_hash
from ..errors import CospeechError
from ..generator import MotionGenerator, WEIGHTS, condition_features
from ..motion import joint_positions, smplx_skeleton
from .evaluator import MotionEvaluator
from .face import flame_face, lip_error, mse, upper_face_dynamics_deviation, velocity_difference
from .frechet import frechet_distance_of
from .kinematics import UPPER_BODY, beat_align, feature_diversity, jerk, joint_speed, l1_diversity

SYSTEMS = ("model", "ground truth", "mean pose", "random real clip", "shuffled audio")
# metric name -> (direction, description); direction: "low" better, "gt" nearer the ground truth's value
# better, "gt0" nearer 0 better. BeatAlign is "gt": jittery motion has speed minima everywhere and scores
# above the ground truth itself, so higher is not better.
METRICS = {
    "FGD": ("low", "Fréchet gesture distance (evaluator gesture features)"),
    "FED": ("low", "Fréchet expression distance (evaluator face features)"),
    "FMD": ("low", "Fréchet motion distance (both)"),
    "BeatAlign": ("gt", "speech onsets vs upper-body motion beats, σ = 0.3 s"),
    "Diversity": ("gt", "mean pairwise distance of gesture features"),
    "L1div": ("gt", "mean |joint − mean pose|, upper body, m"),
    "Jerk": ("gt", "mean |d³p/dt³|, upper body, m/s³"),
    "FaceMSE": ("low", "expression coefficients vs ground truth"),
    "FaceLVD": ("low", "expression velocity difference vs ground truth"),
    "LVE-FLAME": ("low", "per-frame max squared error, jaw + expression coefficients"),
    "FDD-FLAME": ("gt0", "expression dynamics deviation (ground truth − model)"),
}


GESTURE_METRICS = ("FGD", "BeatAlign", "Diversity", "L1div", "Jerk")  # need the evaluator's gesture parts
FACE_METRICS = ("FED", "FaceMSE", "FaceLVD", "LVE-FLAME", "FDD-FLAME")  # need its face parts (jaw, expression)


def measured_metrics(generated, evaluator: MotionEvaluator) -> dict:
    """The metrics (name -> (direction, description)) that say something about a model that
    generates the parts `generated`: a face-only model (DiffSpeaker) is measured on the face, a
    body-only one on the gesture; FMD needs both. Every metric for a model of all parts."""
    has = set(generated)
    gesture, face = set(evaluator.cfg.gesture_parts) <= has, set(evaluator.cfg.face_parts) <= has
    keep = {"FMD"} if gesture and face else set()
    keep |= set(GESTURE_METRICS) if gesture else set()
    keep |= set(FACE_METRICS) if face else set()
    if not keep:
        raise CospeechError(f"the model generates {', '.join(sorted(has))}: neither the evaluator's gesture parts "
                            f"({', '.join(evaluator.cfg.gesture_parts)}) nor its face parts "
                            f"({', '.join(evaluator.cfg.face_parts)}), so no metric applies")
    return {k: v for k, v in METRICS.items() if k in keep}


@dataclass(frozen=True)
class Clip:
    """One evaluated clip: its cached features and derived ground truth."""

    take: CachedTake
    positions: np.ndarray  # (T, 55, 3) ground-truth joints


@dataclass(frozen=True)
class _Frame:
    """How evaluated motion features (T, D) are read: the cache's spec, its fps, the root's origin."""

    spec: object
    fps: float
    origin: tuple


def _positions(frame: _Frame, feats: np.ndarray) -> np.ndarray:
    motion = frame.spec.decode(feats, frame.fps, origin=frame.origin)
    return joint_positions(motion.poses, motion.trans, smplx_skeleton())


def _face(frame: _Frame, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(jaw axis-angle + expression (T, 103), expression (T, 100)) from motion features."""
    return flame_face(frame.spec.decode(feats, frame.fps))


def _ci95(values: list[float]) -> tuple[float, float]:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return float("nan"), float("nan")
    if len(v) == 1 or np.all(v == v[0]):
        return float(v.mean()), 0.0
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean()), float(half)


def _metrics(frame: _Frame, evaluator, clips: list[Clip], motions: list[np.ndarray], gt_feats, mean_speed,
             names=METRICS) -> dict:
    """The metrics `names` of one repetition: `motions[i]` (T_i, D) generated for `clips[i]`."""
    fps = frame.fps
    feats = [evaluator.features(m, spec=frame.spec) for m in motions]
    cat = {k: np.concatenate([f[k] for f in feats]) for k in ("gesture", "face", "motion")}
    upper = list(UPPER_BODY)
    out = {
        "FGD": lambda: frechet_distance_of(cat["gesture"], gt_feats["gesture"]),
        "FED": lambda: frechet_distance_of(cat["face"], gt_feats["face"]),
        "FMD": lambda: frechet_distance_of(cat["motion"], gt_feats["motion"]),
        "Diversity": lambda: feature_diversity(cat["gesture"]),
    }
    out = {k: f() for k, f in out.items() if k in names}
    per_clip = {k: [] for k in ("BeatAlign", "L1div", "Jerk", "FaceMSE", "FaceLVD", "LVE-FLAME", "FDD-FLAME")
                if k in names}
    for clip, m in zip(clips, motions):
        if "Jerk" in per_clip:
            pos = _positions(frame, m)
            rel = pos[:, upper] - pos[:, :1]  # upper body relative to the pelvis
            per_clip["BeatAlign"].append(beat_align(clip.take.onsets, pos, fps, mean_speed=mean_speed))
            per_clip["L1div"].append(l1_diversity(rel))
            per_clip["Jerk"].append(jerk(rel, fps))
        if "FaceMSE" in per_clip:
            lips, expr = _face(frame, m)
            gt_lips, gt_expr = _face(frame, clip.take.motion)
            per_clip["FaceMSE"].append(mse(expr, gt_expr))
            per_clip["FaceLVD"].append(velocity_difference(expr, gt_expr))
            per_clip["LVE-FLAME"].append(lip_error(lips, gt_lips, range(lips.shape[1])))
            per_clip["FDD-FLAME"].append(upper_face_dynamics_deviation(expr, gt_expr, range(expr.shape[1])))
    out.update({k: float(np.nanmean(v)) for k, v in per_clip.items()})
    return out


def evaluate(model: MotionGenerator, cache: FeatureCache, evaluator: MotionEvaluator, split: str = "test",
             samples: int = 3, seed: int = 0, steps: int | None = None, model_path: str | None = None, device: str = "cpu",
             progress: bool = True) -> dict:
    """Evaluate `model` and the controls on the `split` takes of `cache`; returns the report dict.

    A model of some of the cache's parts (DiffSpeaker's face-only model) is measured on the
    metrics of its parts only (`measured_metrics`); its motion joins the cache's channels with
    the other parts at the evaluated takes' mean, which no reported metric reads.
    """
    if samples < 1:
        raise CospeechError("--samples must be ≥ 1")
    spec = cache.spec
    partial = model.cfg.spec != spec
    if partial:  # the model's parts must be some of the cache's, encoded alike
        sub, cols = spec.select(model.cfg.spec.names) if set(model.cfg.spec.names) < set(spec.names) else (None, None)
        if sub != model.cfg.spec:
            raise CospeechError(f"{cache.root}: prepared with another motion spec than the model uses")
    if cache.audio_cfg != model.cfg.audio or abs(cache.fps - model.cfg.fps) > 1e-6:
        raise CospeechError(f"{cache.root}: prepared with other fps, features or motion spec than the model uses")
    evaluator.check_spec(spec)
    names = measured_metrics(model.cfg.spec.names, evaluator)
    frame = _Frame(spec, model.cfg.fps, tuple(model.cfg.origin))
    takes, short = evaluation_takes(cache, split, evaluator.cfg.window)
    clips = [Clip(t, _positions(frame, t.motion)) for t in takes]
    gt_feats_each = [evaluator.features(t.motion, spec=spec) for t in takes]
    gt_feats = {k: np.concatenate([f[k] for f in gt_feats_each]) for k in ("gesture", "face", "motion")}
    mean_speed = np.concatenate([joint_speed(c.positions, model.cfg.fps) for c in clips]).mean(0)
    rest = np.concatenate([t.motion for t in takes]).mean(0) if partial else None  # (D,) the parts not generated

    def whole(feats: np.ndarray) -> np.ndarray:
        """Features of the model's parts (T, D') -> the cache's channels (T, D)."""
        if not partial:
            return feats
        out = np.tile(rest, (len(feats), 1))
        out[:, cols] = feats
        return out

    features = {id(t): condition_features(cache, t, model.cfg.encoder) for t in cache.takes}  # (T, C) each

    def generate(audio: np.ndarray, s: int, speaker: str) -> np.ndarray:
        spk = speaker if speaker in model.cfg.speakers else None  # the take's own style when the model knows it
        return whole(model.sample_features(model.audio_norm.normalize(audio), seed=s, speaker=spk, steps=steps,
                                           device=device))

    rng = np.random.default_rng(seed)
    mean_pose = model.motion_norm.mean.copy()
    for part, sl in zip(model.cfg.spec.parts, model.cfg.spec.slices().values()):
        if part.kind == "velocity":
            mean_pose[sl] = 0.0  # a frozen body does not drift
    mean_pose = whole(mean_pose[None])[0]

    def other_take(t: CachedTake) -> CachedTake:
        """A random other take of the cache (any split), long enough when one is."""
        others = [o for o in cache.takes if o.meta["id"] != t.meta["id"]] or cache.takes
        pool = [o for o in others if o.n_frames >= t.n_frames] or others
        return pool[rng.integers(len(pool))]

    def real_clip(t: CachedTake) -> np.ndarray:
        src = other_take(t)
        if src.n_frames < t.n_frames:
            return np.resize(src.motion, (t.n_frames, src.motion.shape[1]))
        start = rng.integers(0, src.n_frames - t.n_frames + 1)
        return src.motion[start : start + t.n_frames]

    def shuffled_audio(i: int) -> np.ndarray:
        t = takes[i]
        if len(takes) > 1:
            src = takes[(i + 1 + rng.integers(len(takes) - 1)) % len(takes)]  # any other clip of the split
        else:
            src = other_take(t)
        if src.n_frames < t.n_frames:
            return np.resize(features[id(src)], (t.n_frames, features[id(src)].shape[1]))
        start = rng.integers(0, src.n_frames - t.n_frames + 1)
        return features[id(src)][start : start + t.n_frames]

    from tqdm import tqdm

    def measure(motions: list[np.ndarray]) -> dict:
        return _metrics(frame, evaluator, clips, motions, gt_feats, mean_speed, names)

    runs = {s: [] for s in SYSTEMS}
    bar = tqdm(total=samples * (2 * len(takes)) + 2, desc="evaluate", unit="clip", disable=None if progress else True)
    runs["ground truth"].append(measure([t.motion for t in takes]))
    runs["mean pose"].append(measure([np.tile(mean_pose, (t.n_frames, 1)) for t in takes]))
    bar.update(2)
    for r in range(samples):
        gen = []
        for t in takes:
            gen.append(generate(features[id(t)], seed + r, t.meta["speaker"]))
            bar.update(1)
        runs["model"].append(measure(gen))
        runs["random real clip"].append(measure([real_clip(t) for t in takes]))
        shuf = []
        for i in range(len(takes)):
            shuf.append(generate(shuffled_audio(i), seed + r, takes[i].meta["speaker"]))
            bar.update(1)
        runs["shuffled audio"].append(measure(shuf))
    bar.close()

    results = {
        system: {m: dict(zip(("mean", "ci95"), _ci95([run[m] for run in reps])), values=[run[m] for run in reps])
                 for m in names}
        for system, reps in runs.items()
    }
    protocol = evaluation_protocol(model, evaluator, takes, short, split, samples, seed, steps)
    if partial:  # only then, so that the protocols (and hashes) of whole models stay as they were
        protocol["generated_parts"] = list(model.cfg.spec.names)
    run = {"model": {"path": model_path, "sha256": _model_hash(model_path)}, "data_hash": data_hash(takes),
           "take_keys": {t.meta["id"]: t.meta["key"] for t in takes}, "device": device, "cospeech": __version__}
    return {"protocol": protocol, "protocol_sha256": protocol_hash(protocol), "run": run, "metrics": names,
            "results": results, "verdict": verdict(results)}


def evaluation_takes(cache: FeatureCache, split: str, window: int) -> tuple[list[CachedTake], list[str]]:
    """The `split` takes of `cache` long enough for the extractor's window, and the ids of those too short."""
    takes = [t for t in cache.takes if t.meta["split"] == split]
    if not takes:
        counts = {}
        for t in cache.takes:
            counts[t.meta["split"]] = counts.get(t.meta["split"], 0) + 1
        has = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        raise CospeechError(f"{cache.root}: no {split!r} takes to evaluate (the cache has {has}); "
                            f"choose --split or prepare with --split-file")
    short = [t.meta["id"] for t in takes if t.n_frames < window]
    takes = [t for t in takes if t.n_frames >= window]
    if not takes:
        raise CospeechError(f"{cache.root}: no {split!r} take of at least {window} frames to evaluate")
    return takes, short


def evaluation_protocol(model: MotionGenerator, evaluator: MotionEvaluator, takes: list[CachedTake], short: list[str],
                        split: str, samples: int, seed: int, steps: int | None) -> dict:
    """What is measured and how, independent of which model is measured (see `protocol_hash`)."""
    w = evaluator.cfg.window
    return {
        "extractor_sha256": evaluator.hash,
        "extractor": {"window": w, "stride": w // 2, "gesture_parts": list(evaluator.cfg.gesture_parts),
                      "face_parts": list(evaluator.cfg.face_parts)},
        "split": split,
        "takes": [{"id": t.meta["id"], "frames": t.n_frames} for t in takes],
        "skipped_short_takes": short,
        "fps": model.cfg.fps,
        "samples": samples,
        "seeds": [seed + r for r in range(samples)],
        "sampler": model.cfg.diffusion.sampler,
        "steps": steps or model.cfg.diffusion.sample_steps,
        "guidance": model.cfg.diffusion.guidance,
        "beat_align": {"sigma_s": 0.3, "order_frames": max(1, int(round(7 * model.cfg.fps / 30))), "threshold": 0.3,
                       "joints": list(UPPER_BODY), "speed_normaliser": "mean ground-truth speed per joint over the split"},
    }


def protocol_hash(protocol: dict) -> str:
    """sha256 of the protocol's canonical JSON: equal exactly when two evaluations are comparable."""
    return hashlib.sha256(json.dumps(protocol, sort_keys=True).encode()).hexdigest()


def _model_hash(path: str | None) -> str | None:
    from ..generator import resolve_model_path

    folder = resolve_model_path(path)
    return sha256_file(folder / WEIGHTS)


def _distance(metric: str, value: float, truth: float) -> float:
    """How far `value` is from the best value of `metric` (lower is better)."""
    direction = METRICS[metric][0]
    return {"low": value, "gt": abs(value - truth), "gt0": abs(value)}[direction]


def verdict(results: dict) -> dict:
    """Does the model beat each control on the distribution metrics and on BeatAlign (a
    face-only model: on FED and FaceMSE)?

    Each metric is judged by its direction: FGD and FMD lower, BeatAlign nearer the ground truth's.
    """
    out = {}
    measured = results["model"]
    judged = [m for m in ("FGD", "FMD", "BeatAlign") if m in measured] or [m for m in ("FED", "FaceMSE") if m in measured]
    for control in ("random real clip", "shuffled audio"):
        for m in judged:
            mod, ctl, truth = (results[s][m]["mean"] for s in ("model", control, "ground truth"))
            better = _distance(m, mod, truth) < _distance(m, ctl, truth)
            out[f"{m} vs {control}"] = {"model": mod, "control": ctl, "ground_truth": truth, "model_better": bool(better)}
    return out


def format_table(report: dict) -> str:
    """The report as a text table with the protocol above it and the verdict below."""
    p, run = report["protocol"], report["run"]
    lines = [
        f"protocol {report['protocol_sha256'][:16]}  extractor {p['extractor_sha256'][:16]}  split {p['split']} "
        f"({len(p['takes'])} takes)  {p['fps']:g} fps  window {p['extractor']['window']}  samples {p['samples']}  "
        f"{p['sampler']} {p['steps']} steps",
        f"model {(run['model']['sha256'] or '?')[:16]}  data {run['data_hash'][:16]}  cospeech {run['cospeech']}",
    ]
    names = list(report.get("metrics", METRICS))
    head = f"{'system':<17}" + "".join(f"{n:>17}" for n in names)
    lines += [head, "-" * len(head)]
    for system, res in report["results"].items():
        cells = []
        for n in names:
            m, ci = res[n]["mean"], res[n]["ci95"]
            cells.append(f"{m:9.4g} ±{ci:<6.2g}" if ci else f"{m:9.4g}        ")
        lines.append(f"{system:<17}" + "".join(f"{c:>17}" for c in cells))
    arrows = {"low": "lower is better", "gt": "nearer ground truth is better",
              "gt0": "nearer 0 is better"}
    lines.append("")
    lines += [f"  {n}: {d} ({arrows[k]})" for n, (k, d) in METRICS.items() if n in names]
    lines.append("")
    for name, v in report["verdict"].items():
        metric, control = name.split(" vs ")
        truth = f" (ground truth {v['ground_truth']:.4g})" if METRICS[metric][0] == "gt" else ""
        lines.append(f"  model {'beats' if v['model_better'] else 'does NOT beat'} {control} on "
                     f"{metric}: {v['model']:.4g} vs {v['control']:.4g}{truth}")
    return "\n".join(lines)


def format_markdown(report: dict, metrics=None) -> str:
    """The results as a markdown table (mean ± 95% interval)."""
    names = [n for n in metrics or METRICS if n in report.get("metrics", METRICS)]
    lines = ["| system | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for system, res in report["results"].items():
        cells = [f"{res[n]['mean']:.3g} ± {res[n]['ci95']:.2g}" if res[n]["ci95"] else f"{res[n]['mean']:.3g}" for n in names]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(report: dict, path: str | Path) -> None:
    from ..atomic import write_text

    write_text(path, json.dumps(report, indent=1))
