"""Folds: an evaluation that can rank training changes (`cospeech evaluate --folds K`).

One held-out 10-second clip cannot rank methods. Here every frame of a cache is held out once:
- held-out parts: a short take is one part; a long take is cut into contiguous segments of about
  `segment_s` seconds (a take of n frames into round(n / segment) parts of equal length);
- K folds: the parts, in the order of the cache's takes, dealt round-robin into K folds (K = the
  number of parts is leave-one-part-out);
- fold k trains a fresh model on the cache without its held-out parts and without a guard band
  of `guard_s` seconds either side of each (motion next to a held-out segment is nearly the
  held-out motion), and evaluates the held-out parts with `evaluate` (every metric and control);
  the controls draw their real clips from the fold's training part only;
- each fold is evaluated at several checkpoints of one training run (`eval_at`), so the table
  shows the metrics against training steps (over-fitting, early stopping);
- per metric and system: the mean over folds of the fold's value, with a 95% t-interval over
  folds, and for each control the number of folds in which the model beats it.

One protocol covers it all and is hashed: the fold definition (parts, guard), the training
configuration (preset, --set settings, step budget, checkpoints evaluated, seeds) and the
evaluation settings shared by every fold (`evaluate.evaluation_protocol`). Two folds reports are
comparable exactly when their protocol hashes agree; a change under test (a --set setting, a
preset) changes the training part of the protocol, and so its hash, by design: compare the
tables, and read the hash to know that nothing else moved.

The output folder holds `protocol.json`, `report.json`, and per fold `fold-k/` (a training run:
`run.json`, `metrics.jsonl`, `checkpoints/step-N/`) with `eval-step-N.json` per evaluated
checkpoint. An interrupted run continues where it stopped: finished evaluations are read back,
finished training is skipped, unfinished training resumes from its latest checkpoint. A folder
holding another protocol's results is refused.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from scipy import stats

from .._version import __version__
from ..artifacts import read_json
from ..atomic import write_text
from ..data import FeatureCache
from ..errors import CospeechError
from .evaluate import METRICS, SYSTEMS, evaluation_protocol, measured_metrics, protocol_hash

HELD_OUT = "held-out"  # the split name of a fold's held-out parts in its evaluation cache
PROTOCOL = "protocol.json"
REPORT = "report.json"
PER_FOLD = ("split", "takes", "skipped_short_takes")  # evaluation protocol keys that differ between folds
NOT_TRAINING = ("checkpoint_every", "keep_checkpoints", "log_every")  # TrainConfig fields that change no weight
CURVE = ("FGD", "FMD", "BeatAlign", "Jerk", "FaceMSE")  # the metrics of the curve against steps


@dataclass(frozen=True)
class Part:
    """Frames [start, end) of take `take` (its id), held out in one fold."""

    take: str
    start: int
    end: int

    @property
    def frames(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Fold:
    index: int
    held_out: tuple[Part, ...]
    guard: int  # frames left out of training either side of each held-out part

    def exclusions(self, cache: FeatureCache) -> dict[str, list[tuple[int, int]]]:
        """Take id -> frame ranges kept out of training: the held-out parts widened by the guard."""
        n = {t.meta["id"]: t.n_frames for t in cache.takes}
        out: dict[str, list[tuple[int, int]]] = {}
        for p in self.held_out:
            out.setdefault(p.take, []).append((max(0, p.start - self.guard), min(n[p.take], p.end + self.guard)))
        return out


def held_out_parts(cache: FeatureCache, segment: int) -> list[Part]:
    """Every take of `cache` as parts: whole when short, else round(n / segment) contiguous parts."""
    if segment < 1:
        raise CospeechError("the held-out segment must be at least one frame long")
    parts = []
    for t in cache.takes:
        count = max(1, int(round(t.n_frames / segment)))
        edges = np.linspace(0, t.n_frames, count + 1).round().astype(int)
        parts += [Part(t.meta["id"], int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
    return parts


def define_folds(cache: FeatureCache, k: int, segment_s: float = 10.0, guard_s: float = 2.0) -> list[Fold]:
    """K folds over the held-out parts of `cache` (see the module docstring); deterministic."""
    parts = held_out_parts(cache, int(round(segment_s * cache.fps)))
    if not 2 <= k <= len(parts):
        raise CospeechError(f"{cache.root}: --folds must be between 2 and {len(parts)} (the held-out parts of "
                            f"{segment_s:g} s this cache has), got {k}")
    if guard_s < 0:
        raise CospeechError(f"the guard band must be ≥ 0 s, got {guard_s:g}")
    guard = int(round(guard_s * cache.fps))
    return [Fold(i, tuple(parts[i::k]), guard) for i in range(k)]


def fold_caches(cache: FeatureCache, fold: Fold) -> tuple[FeatureCache, FeatureCache]:
    """(what fold trains on, what it is evaluated on): the cache without the fold's held-out parts
    and guard bands; and that plus the held-out parts, in the split `HELD_OUT`."""
    train = cache.excluding(fold.exclusions(cache))
    takes = {t.meta["id"]: t for t in cache.takes}
    held = []
    for p in fold.held_out:
        seg = cache.segment(takes[p.take], p.start, p.end)
        held.append(replace(seg, meta={**seg.meta, "split": HELD_OUT}))
    return train, replace(train, takes=held + train.takes)


@dataclass(frozen=True)
class FoldsConfig:
    """What a folds run trains and measures (all of it in the protocol)."""

    k: int
    preset: str = "default"
    settings: dict = field(default_factory=dict)  # {"section.field": value}: `Preset.override`, the CLI's --set
    train_steps: int | None = None  # the step budget of every fold; None: the largest of eval_at, else the preset's
    eval_at: tuple[int, ...] = ()  # checkpoints evaluated, besides the last step
    segment_s: float = 10.0  # long takes are held out in parts of about this length
    guard_s: float = 2.0  # seconds left out of training either side of a held-out part
    samples: int = 3  # generations per held-out clip (`evaluate`)
    seed: int = 0  # first sampling seed (`evaluate`)
    sample_steps: int | None = None  # denoising steps; None: the preset's

    def steps(self, preset_steps: int) -> tuple[int, ...]:
        """The checkpoints evaluated, ascending; the last is the step budget."""
        budget = self.train_steps or max(self.eval_at, default=preset_steps)
        if budget < 1 or any(s < 1 or s > budget for s in self.eval_at):
            raise CospeechError(f"--eval-at steps must lie within 1..{budget} (the training steps), got "
                                f"{', '.join(map(str, self.eval_at))}")
        return tuple(sorted(set(self.eval_at) | {budget}))


def training_record(cache: FeatureCache, cfg: FoldsConfig) -> dict:
    """The training configuration every fold runs, as its run.json will record it (less the
    fields that change no weight), with the checkpoints evaluated. The --set settings are in it
    as the values they give (a setting equal to the preset's changes nothing)."""
    from ..train import get_preset

    preset = get_preset(cfg.preset).override(cfg.settings)
    steps = cfg.steps(preset.train.steps)
    tcfg = replace(preset.train, steps=steps[-1])
    window = tcfg.window or cache.window  # as the training loop resolves them from the cache
    tcfg = replace(tcfg, window=window, stride=tcfg.stride or cache.stride,
                   overlap=tcfg.overlap if tcfg.overlap is not None else window // 4)
    return {"preset": cfg.preset, "train": _weight_settings(asdict(tcfg)), "denoiser": dict(preset.denoiser),
            "diffusion": preset.diffusion.to_dict(), "eval_at": list(steps),
            "motion_spec": cache.spec.to_dict()}  # what the models learn to produce (e.g. the root's encoding)


def evaluation_settings(evaluator, fps: float, diffusion: dict, cfg: FoldsConfig, generated=None) -> dict:
    """The evaluation protocol every fold shares: `evaluation_protocol` less what names the clips;
    `generated`: the parts a model of some of the cache's parts generates (as `evaluate` records them)."""
    from ..diffusion import DiffusionConfig

    model = SimpleNamespace(cfg=SimpleNamespace(fps=fps, diffusion=DiffusionConfig.from_dict(diffusion)))
    protocol = evaluation_protocol(model, evaluator, [], [], HELD_OUT, cfg.samples, cfg.seed, cfg.sample_steps)
    if generated:
        protocol["generated_parts"] = list(generated)
    return _plain({k: v for k, v in protocol.items() if k not in PER_FOLD})


def folds_protocol(cache: FeatureCache, folds: list[Fold], cfg: FoldsConfig, evaluator) -> dict:
    """The one protocol of a folds run: fold definition, training, shared evaluation settings."""
    from ..train import get_preset

    training = training_record(cache, cfg)
    parts = get_preset(cfg.preset).parts
    generated = cache.spec.select(parts)[0].names if parts and set(cache.spec.names) - set(parts) else None
    return _plain({
        "kind": "folds",
        "folds": {
            "k": len(folds), "segment_frames": int(round(cfg.segment_s * cache.fps)), "guard_frames": folds[0].guard,
            "held_out": [[asdict(p) for p in f.held_out] for f in folds],
        },
        "training": training,
        "evaluation": evaluation_settings(evaluator, cache.fps, training["diffusion"], cfg, generated),
    })


def _plain(obj):
    """`obj` as JSON reads it back (tuples become lists), so records compare equal to files."""
    return json.loads(json.dumps(obj))


def mean_ci95(values) -> dict:
    """Mean over folds and the half-width of its 95% t-interval (Student t, n − 1 degrees of
    freedom, sample standard deviation); non-finite values are left out and counted in n."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    n = len(v)
    if n == 0:
        return {"mean": float("nan"), "ci95": float("nan"), "n": 0}
    if n == 1:
        return {"mean": float(v[0]), "ci95": float("nan"), "n": 1}
    half = stats.t.ppf(0.975, n - 1) * v.std(ddof=1) / math.sqrt(n)
    return {"mean": float(v.mean()), "ci95": float(half), "n": n}


def aggregate(folds: list[dict]) -> dict:
    """Per fold {"results": system -> metric -> value, "verdict": name -> {"model_better": bool}}
    (one step) -> {"results": system -> metric -> mean, ci95, n, values (per fold)}, "verdict":
    name -> model_better (the number of folds the model wins), folds}."""
    results = {system: {metric: {**mean_ci95([f["results"][system][metric] for f in folds]),
                                 "values": [f["results"][system][metric] for f in folds]}
                        for metric in res}
               for system, res in folds[0]["results"].items()}
    verdict = {name: {"model_better": sum(bool(f["verdict"][name]["model_better"]) for f in folds), "folds": len(folds)}
               for name in folds[0]["verdict"]}
    return {"results": results, "verdict": verdict}


def _name(part: Part, cache: FeatureCache) -> str:
    whole = any(t.meta["id"] == part.take and t.n_frames == part.frames for t in cache.takes)
    return part.take if whole else f"{part.take}[{part.start}:{part.end}]"


def _checkpoint(run: Path, step: int) -> Path:
    return run / "checkpoints" / f"step-{step:08d}"


def _train_fold(cache: FeatureCache, run: Path, cfg: FoldsConfig, steps: tuple[int, ...], device: str,
                progress: bool) -> None:
    """Train (or resume, or skip when done) one fold's run, keeping the checkpoints of `steps`."""
    from ..train import train

    final = _checkpoint(run, steps[-1])
    if not (final / "state.json").exists():
        ckpts = run / "checkpoints"
        for tmp in ckpts.glob(".step-*") if ckpts.exists() else []:  # left by a killed process
            shutil.rmtree(tmp, ignore_errors=True)
        resume = ckpts.exists() and any((c / "state.json").exists() for c in ckpts.glob("step-*"))
        train(cache, run, preset=cfg.preset, settings=cfg.settings, resume=resume, progress=progress, device=device,
              steps=steps[-1], checkpoint_every=math.gcd(*steps), keep_checkpoints=0)
    for ckpt in (run / "checkpoints").glob("step-*"):
        if int(ckpt.name[5:]) not in steps:
            shutil.rmtree(ckpt, ignore_errors=True)


def _training_seconds(run: Path) -> float:
    """Wall-clock seconds the fold's training took (over resumes), from its metrics.jsonl."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return float(json.loads(lines[-1])["time_s"]) if lines else float("nan")


def _weight_settings(train: dict) -> dict:
    """TrainConfig fields (a dict) less those that change no weight, as a protocol records them:
    one pass per step (grad_accum 1) is left out, as protocols before accumulation existed meant it."""
    out = {k: v for k, v in train.items() if k not in NOT_TRAINING}
    if out.get("grad_accum") == 1:
        del out["grad_accum"]
    return out


def _check_run(run: Path, training: dict) -> None:
    """The fold's run.json says it trained what the protocol says."""
    spec = read_json(run / "run.json", "training run")
    got = {"preset": spec.get("preset"), "denoiser": spec.get("denoiser"),
           "diffusion": spec.get("diffusion"), "train": _weight_settings(spec["train"])}
    want = {k: training[k] for k in got}
    if got != want:
        raise CospeechError(f"{run}: trained with other settings than the folds protocol says; use a new output folder")


def run_folds(cache: FeatureCache, out: str | Path, cfg: FoldsConfig, evaluator, device: str = "cpu",
              progress: bool = True, log=print) -> dict:
    """Train and evaluate every fold of `cache` into `out` (resuming what is there); returns the report."""
    from ..generator import load_model
    from ..train.presets import typed_settings
    from .evaluate import evaluate, write_report

    folds = define_folds(cache, cfg.k, cfg.segment_s, cfg.guard_s)
    protocol = folds_protocol(cache, folds, cfg, evaluator)
    digest = protocol_hash(protocol)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / PROTOCOL).exists():
        if protocol_hash(read_json(out / PROTOCOL, "folds protocol")) != digest:
            raise CospeechError(f"{out}: holds a folds run of another protocol; choose a new output folder")
    else:
        write_text(out / PROTOCOL, json.dumps(protocol, indent=1))
    steps = tuple(protocol["training"]["eval_at"])
    per_fold = []
    for fold in folds:
        run = out / f"fold-{fold.index}"
        train_cache, eval_cache = fold_caches(cache, fold)
        names = ", ".join(_name(p, cache) for p in fold.held_out)
        log(f"fold {fold.index + 1}/{len(folds)}: holds out {names}; trains on {sum(t.n_frames for t in train_cache.takes)} "
            f"frames")
        _train_fold(train_cache, run, cfg, steps, device, progress)
        _check_run(run, protocol["training"])
        reports = {}
        for step in steps:
            path = run / f"eval-step-{step:08d}.json"
            if path.exists():
                report = read_json(path, "fold evaluation")
            else:
                ckpt = _checkpoint(run, step)
                report = evaluate(load_model(ckpt), eval_cache, evaluator, split=HELD_OUT, samples=cfg.samples,
                                  seed=cfg.seed, steps=cfg.sample_steps, model_path=str(ckpt), device=device,
                                  progress=progress)
                write_report(report, path)
            shared = _plain({k: v for k, v in report["protocol"].items() if k not in PER_FOLD})
            if shared != protocol["evaluation"]:
                raise CospeechError(f"{path}: evaluated under other settings than the folds protocol; "
                                    "use a new output folder")
            reports[step] = report
        per_fold.append({"index": fold.index, "held_out": [asdict(p) for p in fold.held_out],
                         "train_frames": int(sum(t.n_frames for t in train_cache.takes)),
                         "protocol_sha256": {str(s): r["protocol_sha256"] for s, r in reports.items()},
                         "results": {str(s): {sys: {m: v["mean"] for m, v in res.items()}
                                              for sys, res in r["results"].items()} for s, r in reports.items()},
                         "verdict": {str(s): r["verdict"] for s, r in reports.items()},
                         "train_s": _training_seconds(run)})
    by_step = {str(s): aggregate([{"results": f["results"][str(s)], "verdict": f["verdict"][str(s)]} for f in per_fold])
               for s in steps}
    report = {"protocol": protocol, "protocol_sha256": digest,
              "run": {"set": _plain(typed_settings(cfg.settings)), "data_hash": cache.data_hash, "cache": str(cache.root),
                      "device": device, "cospeech": __version__},
              "metrics": measured_metrics(protocol["evaluation"].get("generated_parts") or cache.spec.names, evaluator),
              "folds": per_fold, "steps": by_step}
    write_report(report, out / REPORT)
    return report


def _cell(v: dict) -> str:
    ci = v["ci95"]
    return f"{v['mean']:9.4g} ±{ci:<7.2g}" if np.isfinite(ci) and ci else f"{v['mean']:9.4g}         "


def format_folds(report: dict) -> str:
    """The folds report as text: protocol, the table at the last step, the verdict counts, the curve."""
    p, run = report["protocol"], report["run"]
    tr, ev, fo = p["training"], p["evaluation"], p["folds"]
    steps = list(report["steps"])
    last = report["steps"][steps[-1]]
    settings = " ".join(f"--set {k}={v}" for k, v in run["set"].items())
    lines = [
        f"folds protocol {report['protocol_sha256'][:16]}  {fo['k']} folds over "
        f"{sum(len(f) for f in fo['held_out'])} held-out parts (segments of {fo['segment_frames']} frames, "
        f"guard {fo['guard_frames']} frames)",
        f"training: preset {tr['preset']}{' ' + settings if settings else ''}, {tr['train']['steps']} steps, seed "
        f"{tr['train']['seed']}; evaluated at {', '.join(steps)}",
        f"evaluation: extractor {ev['extractor_sha256'][:16]}  samples {ev['samples']}  {ev['sampler']} {ev['steps']} steps"
        f"  data {run['data_hash'][:16]}  cospeech {run['cospeech']}",
        f"step {steps[-1]}: mean over folds ± 95% interval",
    ]
    names = list(report.get("metrics", METRICS))
    curve = [n for n in CURVE if n in names]
    head = f"{'system':<17}" + "".join(f"{n:>19}" for n in names)
    lines += [head, "-" * len(head)]
    for system in SYSTEMS:
        res = last["results"][system]
        lines.append(f"{system:<17}" + "".join(f"{_cell(res[n]):>19}" for n in names))
    lines.append("")
    for name, v in last["verdict"].items():
        metric, control = name.split(" vs ")
        lines.append(f"  model beats {control} on {metric} in {v['model_better']}/{v['folds']} folds")
    lines += ["", "model against training steps (mean over folds ± 95% interval)",
              f"{'step':<17}" + "".join(f"{n:>19}" for n in curve)]
    for s in steps:
        res = report["steps"][s]["results"]["model"]
        lines.append(f"{s:<17}" + "".join(f"{_cell(res[n]):>19}" for n in curve))
    truth = last["results"]["ground truth"]
    lines.append(f"{'ground truth':<17}" + "".join(f"{_cell(truth[n]):>19}" for n in curve))
    return "\n".join(lines)


def format_markdown(report: dict, step: str | None = None, metrics=None) -> str:
    """The table of one step (default: the last) as markdown, mean ± 95% interval over folds."""
    step = step or list(report["steps"])[-1]
    names = [n for n in metrics or METRICS if n in report.get("metrics", METRICS)]
    lines = ["| system | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for system, res in report["steps"][step]["results"].items():
        cells = [f"{res[n]['mean']:.3g} ± {res[n]['ci95']:.2g}" if np.isfinite(res[n]["ci95"]) and res[n]["ci95"]
                 else f"{res[n]['mean']:.3g}" for n in names]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
