"""The `cospeech` command: a thin layer that turns arguments into calls of library functions.

Every user-input problem is a `CospeechError`, printed as one line with a non-zero exit.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from .._version import __version__
from ..atomic import write_text
from ..errors import CospeechError

EXAMPLE_SPEECH = "arctic_a0007.wav"


def example_speech() -> Path:
    return Path(str(resources.files("cospeech") / "assets" / EXAMPLE_SPEECH))


# What each command reads and writes: its `--help` text and the README's section of the command.
ABOUT: dict[str, tuple[str, str, str]] = {  # command -> (what it does, reads, writes)
    "generate": ("Turn speech into holistic 3D motion (body, hands, face) with a diffusion model.",
                 "speech files (wav, flac, ogg, mp3); the model (-m, default: the bundled one); optional pose and "
                 "keyframe npz files",
                 "OUT/<stem>.<format> per input for each of --formats (npz, bvh, mp4 preview, glb, ARKit curves...); "
                 "a line per input on stdout"),
    "prepare": ("Turn a dataset folder in a published layout into a feature cache for training.",
                "SRC in the named layout (motion + speech files; a split csv when given)",
                "OUT/index.json, OUT/takes/<key>.npz (motion features, mask, speech onsets), "
                "OUT/streams/<stream>/<key>.npy (speech features); files already there are kept"),
    "train": ("Train a model on a feature cache, on one CPU or GPU, several GPUs or several machines.",
              "the cache's train split (--data, memory-mapped); with --resume the run's latest checkpoint",
              "OUT/run.json (settings, data), OUT/metrics.jsonl (loss, lr, gradient norm, time), "
              "OUT/checkpoints/step-N/ (model.safetensors + model.json, loadable with -m OUT; state.* to resume); "
              "only the first process writes"),
    "evaluate": ("Score a model against the real motion and controls (FGD, FED, FMD, BeatAlign, jerk, face error).",
                 "the model (RUN), the cache (--data), the evaluator (default: the bundled one)",
                 "the table on stdout; the report with its protocol to --json; with --folds, OUT/ holds each "
                 "fold's run and report.json"),
    "train-evaluator": ("Train the motion auto-encoder whose features FGD, FED and FMD compare.",
                        "the cache's train split (--data)",
                        "OUT/evaluator.safetensors + OUT/evaluator.json"),
    "benchmark": ("Measure time and memory: backbones against sequence length, the command line, a training step, "
                  "streaming or the presets side by side.",
                  "nothing but the options (the bundled model and sample; --train-data, --speech, --reference "
                  "when given)",
                  "JSON on stdout (and to --json), a table on stderr"),
    "export": ("Convert a motion file to another format.",
               "MOTION: an SMPL-X npz, a BVH or a Live Link Face CSV",
               "one file: -o, or <stem><suffix> beside the input"),
    "serve": ("Serve the model over WebSockets (speech in, motion frames out) with a browser viewer.",
              "the model (-m); speech from clients",
              "nothing on disk; motion frames to clients, a line per event on stderr"),
    "retarget": ("Move SMPL-X motion onto another BVH skeleton (BEAT's, Mixamo-named rigs).",
                 "MOTION (SMPL-X npz or BVH) and the rig's BVH (--to)",
                 "the BVH -o, on the rig's skeleton"),
    "presets": ("List the training presets: the paper each follows, its parameter count and its defaults.",
                "nothing (each preset's denoiser is built for SMPL-X + FLAME motion to count its parameters)",
                "a line per preset on stdout (--json: a list of records)"),
    "info": ("Describe a model: configuration, training data, metrics and licence.",
             "MODEL (a model folder, model.safetensors or training run; default: the bundled model)",
             "the description on stdout"),
}


def _about(command: str) -> dict:
    """add_parser keywords: the one-line help and a description that says what the command reads and writes."""
    import textwrap

    what, reads, writes = ABOUT[command]
    lines = [textwrap.fill(f"{label:<8}{text}", 100, subsequent_indent=" " * 8)
             for label, text in (("reads:", reads), ("writes:", writes))]
    return {"description": textwrap.fill(what, 100) + "\n\n" + "\n".join(lines),
            "formatter_class": argparse.RawDescriptionHelpFormatter}


# -- generate ------------------------------------------------------------------------------
def _generate(args) -> int:
    from ..generator import SampleOptions
    from ..pipeline import generate_files, read_keyframes, read_pose

    inputs = [Path(p) for p in args.audio]
    if args.example:
        inputs.append(example_speech())
    if not inputs:
        raise CospeechError("no speech given: name audio files, or pass --example for the bundled sample")
    options = SampleOptions(steps=args.steps, sampler=args.sampler, guidance=args.guidance, seed=args.seed,
                            speaker=args.speaker, device=args.device, dtype=args.dtype, joiner=args.joiner,
                            jump_length=args.jump_length, jump_count=args.jump_count)
    keyframes = read_keyframes(args.keyframes) if args.keyframes else {}
    for frame, pose in ((0, args.start_pose), (-1, args.end_pose)):
        if pose:
            keyframes[frame] = read_pose(pose)
    report = generate_files(args.model, inputs, args.out, args.formats, options,
                            error=lambda msg: print(f"cospeech: error: {msg}", file=sys.stderr), keyframes=keyframes,
                            progress=not args.quiet, audio_encoder=args.audio_encoder, style_from=args.style_from)
    return 0 if report.ok else 1


# -- prepare / train / info ----------------------------------------------------------------
def _prepare(args) -> int:
    from ..audio.extractors import parse_encoder
    from ..data import prepare

    encoders = [parse_encoder(text) for text in args.audio_encoder]
    index = prepare(args.layout, args.src, args.out, window=args.window, stride=args.stride, split_file=args.split_file,
                    fps=args.fps, source_fps=args.source_fps, progress=not args.quiet,
                    streams={enc.NAME: enc for enc in encoders} or None)
    takes = index["takes"]
    frames = sum(t["frames"] for t in takes)
    splits = {s: sum(t["split"] == s for t in takes) for s in ("train", "val", "test")}
    print(f"{args.out}: {len(takes)} takes ({', '.join(f'{n} {s}' for s, n in splits.items() if n)}), "
          f"{frames} frames ({frames / index['fps'] / 60:.1f} min at {index['fps']:g} fps)")
    return 0


def _train(args) -> int:
    from ..train import train
    from ..train.presets import parse_settings

    gen = train(args.data, args.out, preset=args.preset, resume=args.resume, steps=args.steps,
                batch_size=args.batch_size, lr=args.lr, seed=args.seed, backbone=args.backbone, device=args.device,
                settings=parse_settings(args.set), devices=args.devices, num_nodes=args.num_nodes,
                precision=args.precision, progress=not args.quiet, audio_encoder=args.audio_encoder)
    rec = gen.info.get("training", {})
    if rec.get("rank", 0) == 0:  # one line for the run, not one per process
        world = rec.get("world_size", 1)
        print(f"{args.out}: trained to step {rec.get('step')}, loss {rec.get('loss_smooth', float('nan')):.4f}"
              + (f" ({world} processes)" if world > 1 else ""))
    return 0


def _train_evaluator(args) -> int:
    from ..data import load_cache
    from ..metrics.evaluator import train_evaluator

    ev = train_evaluator(load_cache(args.data, split="train"), args.out, steps=args.steps, window=args.window, seed=args.seed,
                         progress=not args.quiet)
    print(f"{args.out}: evaluator sha256 {ev.hash} (loss {ev.info['loss_first']:.3f} -> {ev.info['loss_last']:.4f})")
    return 0


FOLDS_ONLY = ("preset", "backbone", "train_steps", "eval_at", "set", "out", "segment", "guard")  # options that train


def _evaluate(args) -> int:
    from ..data import load_cache
    from ..generator import load_model
    from ..metrics.evaluate import evaluate, format_table, write_report
    from ..metrics.evaluator import MotionEvaluator, bundled_evaluator_path

    if args.folds is not None:
        return _evaluate_folds(args)
    if args.run is None:
        raise CospeechError("evaluate: name the model to evaluate (a model or run folder, or 'bundled'), or pass --folds K")
    given = [name for name in FOLDS_ONLY if getattr(args, name) not in (None, [])]
    if given:
        raise CospeechError(f"evaluate: --{given[0].replace('_', '-')} trains models, so it goes with --folds K")
    model_path = None if args.run in ("bundled", "default") else args.run
    model = load_model(model_path)
    evaluator = MotionEvaluator.load(args.evaluator or bundled_evaluator_path())
    report = evaluate(model, load_cache(args.data), evaluator, split=args.split or "test", samples=args.samples,
                      seed=args.seed, steps=args.steps, model_path=model_path, device=args.device, progress=not args.quiet)
    print(format_table(report))
    if args.json:
        write_report(report, args.json)
        print(f"\nreport with protocol: {args.json}")
    return 0


def _evaluate_folds(args) -> int:
    from ..data import load_cache
    from ..metrics.evaluator import MotionEvaluator, bundled_evaluator_path
    from ..metrics.folds import FoldsConfig, format_folds, run_folds
    from ..train.presets import parse_settings

    if args.run is not None:
        raise CospeechError(f"evaluate --folds trains a model per fold; it takes no model ({args.run!r} given)")
    if args.out is None:
        raise CospeechError("evaluate --folds needs -o OUT, the folder of the per-fold runs and the report")
    if args.split is not None:
        raise CospeechError("evaluate --folds holds out every take in turn; it takes no --split")
    settings = parse_settings(args.set)
    if args.backbone:
        settings["denoiser.backbone"] = args.backbone
    try:
        eval_at = tuple(int(v) for v in (args.eval_at or "").split(",") if v.strip())
    except ValueError:
        raise CospeechError(f"--eval-at takes comma-separated step counts; got {args.eval_at!r}") from None
    cfg = FoldsConfig(k=args.folds, preset=args.preset or "default", settings=settings, train_steps=args.train_steps,
                      eval_at=eval_at, segment_s=args.segment if args.segment is not None else 10.0,
                      guard_s=args.guard if args.guard is not None else 2.0, samples=args.samples, seed=args.seed,
                      sample_steps=args.steps)
    evaluator = MotionEvaluator.load(args.evaluator or bundled_evaluator_path())
    report = run_folds(load_cache(args.data), args.out, cfg, evaluator, device=args.device, progress=not args.quiet,
                       log=lambda line: print(line, file=sys.stderr, flush=True))
    print(format_folds(report))
    if args.json:
        write_text(args.json, Path(args.out, "report.json").read_text())
    print(f"\nreport with protocol: {Path(args.out) / 'report.json'}")
    return 0


def _info(args) -> int:
    from ..model_info import describe_model, format_info

    if args.model and args.model_option and args.model != args.model_option:
        raise CospeechError(f"info: two models named ({args.model}, -m {args.model_option}); name one")
    print(format_info(describe_model(args.model or args.model_option)))
    return 0


def _presets(args) -> int:
    import json

    from ..train.presets import CATALOGUE_SPEAKERS, catalogue

    rows = catalogue()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"parameters: the denoiser for SMPL-X + FLAME motion, the default speech features, {CATALOGUE_SPEAKERS} speakers")
    name_w, paper_w = (max(len(r[k]) for r in rows) for k in ("preset", "paper"))
    for r in rows:
        print(f"{r['preset']:<{name_w}}  {r['paper']:<{paper_w}} {r['params'] / 1e6:7.2f} M  "
              f"{r['backbone']}, width {r['width']}, "
              f"depth {r['depth']}, {r['heads']} heads, predicts {r['prediction']}, {r['sampler']} {r['sample_steps']}, "
              f"window {r['window']}, motion {r['motion']}")
    return 0


def _print_report(report: dict, json_path: str | None, table: str | None = None) -> int:
    """A benchmark's report: JSON on stdout (and in `json_path`), its table on stderr."""
    import json

    text = json.dumps(report, indent=2)
    print(text)
    if table is not None:
        print(table, file=sys.stderr)
    if json_path:
        write_text(json_path, text + "\n")
    return 0


def _benchmark(args) -> int:

    if args.streaming:
        return _benchmark_streaming(args)
    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.cli or args.train_profile:
        if args.cli:
            from ..bench_cli import run_cli_benchmark

            report = run_cli_benchmark(reps=args.reps, long_take=args.long, log=log)
        else:
            from ..bench_train import run_train_profile

            presets = tuple(p.strip() for p in (args.presets or "tiny,default").split(",") if p.strip())
            report = run_train_profile(data=args.train_data, presets=presets, steps=args.train_steps, log=log)
        return _print_report(report, args.json)

    if args.presets is not None:
        return _benchmark_presets(args, log)
    from ..bench import BenchConfig, markdown_table, run_benchmark

    def items(text: str) -> tuple[str, ...]:
        return tuple(v.strip() for v in text.split(",") if v.strip())

    try:
        lengths = tuple(int(v) for v in items(args.lengths))
    except ValueError:
        raise CospeechError(f"--lengths takes comma-separated frame counts; got {args.lengths!r}") from None
    cfg = BenchConfig(backbones=items(args.backbones), lengths=lengths, modes=items(args.mode), width=args.width,
                      depth=args.depth, heads=args.heads, batch=args.batch, reps=args.reps, device=args.device,
                      threads=args.threads)
    report = run_benchmark(cfg, log=log, wait_idle=args.wait_idle)
    return _print_report(report, args.json, markdown_table(report))


def _benchmark_presets(args, log) -> int:
    from ..bench_presets import PresetBenchConfig, markdown_table, run_preset_benchmark

    def items(text: str) -> tuple[str, ...]:
        return tuple(v.strip() for v in text.split(",") if v.strip())

    cfg = PresetBenchConfig(presets=items(args.presets), train_reps=args.reps, seconds=args.seconds or 20.0,
                            joiners=items(args.joiners), dtypes=items(args.dtypes), threads=args.threads, device=args.device)
    report = run_preset_benchmark(cfg, log=log)
    return _print_report(report, args.json, markdown_table(report))


# -- export --------------------------------------------------------------------------------
def _export(args) -> int:
    import warnings

    from ..export.convert import convert

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            written, note = convert(args.motion, args.to, args.out, fps=args.fps)
        finally:  # a reader's warning (a BVH header that lies) as one line, before any error
            for w in caught:
                print(f"cospeech: warning: {w.message}", file=sys.stderr)
    print(f"{args.motion} -> {written}")
    if note:
        print(f"cospeech: note: {note}", file=sys.stderr)
    return 0


def _serve(args) -> int:
    from ..serve import ServeConfig, serve

    config = ServeConfig(host=args.host, port=args.port, max_sessions=args.max_sessions,
                         max_message_bytes=args.max_message_bytes, idle_timeout_s=args.idle_timeout,
                         max_backlog_s=args.max_backlog,
                         workers=args.workers, lookahead_s=args.lookahead, steps=args.steps, seed=args.seed,
                         device=args.device)
    serve(args.model, config, announce=lambda line: print(line, file=sys.stderr, flush=True))
    return 0


def _retarget(args) -> int:
    from ..export.convert import read_motion
    from ..export.retarget import write_retargeted_bvh

    out = Path(args.out)
    if out.resolve() in (Path(args.motion).resolve(), Path(args.to).resolve()):
        raise CospeechError(f"{out}: is an input; name another output with -o")
    motion = read_motion(args.motion, fps=args.fps)
    try:
        motion.require("body", purpose="retargeting")
    except CospeechError as err:
        raise CospeechError(f"{args.motion}: {err}") from None
    written = write_retargeted_bvh(motion, args.to, out)
    print(f"{args.motion} -> {written} (on the skeleton of {args.to})")
    return 0


def _benchmark_streaming(args) -> int:

    from ..audio import load_audio
    from ..bench_streaming import StreamBenchConfig, markdown_table, run_stream_benchmark
    from ..generator import load_model

    def numbers(text: str, kind, name: str) -> tuple:
        try:
            return tuple(kind(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise CospeechError(f"--{name} takes comma-separated values; got {text!r}") from None

    cfg = StreamBenchConfig(steps=numbers(args.steps, int, "steps"), samplers=numbers(args.samplers, str.strip, "samplers"),
                            window=args.window, overlap=args.overlap, lookahead_s=args.lookahead, chunk_s=args.chunk,
                            seconds=args.seconds, seed=args.seed, threads=args.threads, clock=args.clock,
                            jump_counts=numbers(args.jump_counts, int, "jump counts"))
    model = load_model(args.model)
    speech = Path(args.speech) if args.speech else example_speech()
    sr = model.cfg.audio.sample_rate
    wave = load_audio(speech, sr)
    reference = evaluator = None
    if args.reference:
        from ..data.base import Take
        from ..data.folder import load_motion
        from ..metrics.evaluator import MotionEvaluator, bundled_evaluator_path

        ref = Path(args.reference)
        if not ref.is_file() or ref.suffix != ".npz":
            raise CospeechError(f"{ref}: --reference takes the SMPL-X .npz motion of the speech (BEAT2 key names)")
        reference = load_motion(Take("reference", ref.stem, "", "", ref, ref))
        evaluator = MotionEvaluator.load(bundled_evaluator_path())
    report = run_stream_benchmark(model, wave, sr, cfg, reference, evaluator,
                                  log=lambda line: print(line, file=sys.stderr, flush=True))
    report["speech"], report["reference"] = str(speech), args.reference
    return _print_report(report, args.json, markdown_table(report))


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `only`, the arguments of that subcommand alone (the others
    keep their names and help), so `cospeech --help` imports neither torch nor the models."""

    def want(name: str) -> bool:
        return only is None or only == name

    parser = argparse.ArgumentParser(prog="cospeech", description="Speech to holistic 3D motion with diffusion models.")
    parser.add_argument("--version", action="version", version=f"cospeech {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", **_about("generate"),
                       help="speech files -> motion (.npz, .bvh) and a preview (.mp4)")
    if want("generate"):
        from ..diffusion import SAMPLERS
        from ..export import DEFAULT_FORMATS, EXPORTERS
        from ..generator import DTYPES, JOINERS
        g.add_argument("audio", nargs="*", help="speech files (wav, flac, ogg; any rate, depth, channels)")
        g.add_argument("--example", action="store_true", help="also run the bundled CMU ARCTIC sample")
        g.add_argument("-m", "--model", default=None, help="model folder, model.safetensors or training run (default: bundled)")
        g.add_argument("-o", "--out", default=".", help="output folder (default: current folder)")
        g.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same motion")
        g.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's, 25)")
        g.add_argument("--sampler", choices=SAMPLERS, default=None, help="default: the model's (ddim)")
        g.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (1 = off)")
        g.add_argument("--speaker", default=None, help="speaker style (see `cospeech info`)")
        g.add_argument("--formats", default=",".join(DEFAULT_FORMATS),
                       help="comma-separated files to write (default: %(default)s): "
                            + "; ".join(f"{e.name}: {e.description}" for e in EXPORTERS.values()))
        g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
        g.add_argument("--joiner", choices=JOINERS, default="fused",
                       help="long speech: windows fused at every step (default) or out-painted one after another (foppas)")
        g.add_argument("--jump-count", type=int, default=0,
                       help="RePaint resampling: after every --jump-length steps, noise back and redo them this many "
                            "times (smoother joins to held frames and keyframes; costs (1 + N)x; default 0 = off)")
        g.add_argument("--jump-length", type=int, default=1, help="steps per resampling jump (default 1)")
        g.add_argument("--start-pose", metavar="FILE[:FRAME]", default=None,
                       help="begin in this pose: a frame (default 0) of an SMPL-X npz, "
                            "e.g. the end of a previous clip (out.npz:-1)")
        g.add_argument("--end-pose", metavar="FILE[:FRAME]", default=None, help="end in this pose (as --start-pose)")
        g.add_argument("--keyframes", metavar="FILE", default=None,
                       help='JSON {"FRAME": "pose.npz[:FRAME]", ...}: poses to pass through (negative FRAME counts from the end)')
        g.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="network precision (default: float32)")
        g.add_argument("-q", "--quiet", action="store_true",
                       help="no progress bar (shown on a terminal for speech over 30 s)")
        g.add_argument("--audio-encoder", metavar="KIND=DIR", default=None,
                       help="the SSL encoder weights a model trained on them needs, e.g. wavlm=models/wavlm-base-plus")
        g.add_argument("--style-from", metavar="REF.wav", default=None,
                       help="take the style from this recording (models with a fuzzy style extractor: dim-gestor)")
    g.set_defaults(func=_generate)

    p = sub.add_parser("prepare", **_about("prepare"),
                       help="a dataset folder -> a feature cache for training")
    if want("prepare"):
        from ..data import ADAPTERS
        p.add_argument("layout", choices=sorted(ADAPTERS), help="the dataset's published layout")
        p.add_argument("src", help="dataset folder")
        p.add_argument("-o", "--out", required=True, help="cache folder (several datasets may share one)")
        p.add_argument("--window", type=int, default=120, help="frames per training window (default 120)")
        p.add_argument("--stride", type=int, default=10, help="frames between window starts (default 10)")
        p.add_argument("--split-file", default=None, help="csv id,type (train/val/test) overriding the dataset's split")
        p.add_argument("--fps", type=float, default=None,
                       help="the model's frame rate: motion at any other rate is resampled to it once, here "
                            "(default: the cache's, else 30)")
        p.add_argument("--source-fps", type=float, default=None,
                       help="the motion files' real frame rate, where their headers state a wrong one")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar (shown only on a terminal)")
        p.add_argument("--audio-encoder", metavar="KIND=DIR", action="append", default=[],
                       help="also cache this SSL encoder's features (hubert, wavlm or wav2vec2 weights in a local "
                            "folder, e.g. wavlm=models/wavlm-base-plus); repeatable")
    p.set_defaults(func=_prepare)

    t = sub.add_parser("train", **_about("train"),
                       help="train a model on a feature cache")
    if want("train"):
        from ..models import BACKBONES
        from ..train import PRESETS
        t.add_argument("--data", required=True, help="cache folder from `cospeech prepare`")
        t.add_argument("-o", "--out", required=True, help="run folder for checkpoints and logs")
        t.add_argument("--preset", choices=sorted(PRESETS), default="default",
                       help="configuration (default: the bundled model's)")
        t.add_argument("--backbone", choices=sorted(BACKBONES), default=None, help="override the preset's backbone")
        t.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the preset's)")
        t.add_argument("--batch-size", type=int, default=None,
                       help="windows per optimiser step, over all processes and accumulation passes (default: the preset's)")
        t.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the preset's)")
        t.add_argument("--seed", type=int, default=None, help="random seed (default: the preset's, 0)")
        t.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
        t.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
        t.add_argument("--devices", type=int, default=None, metavar="N",
                       help="processes on this machine: GPUs with --device cuda, else CPU processes (gloo); "
                            "default: torchrun's, else 1. The batch size stays the global one")
        t.add_argument("--num-nodes", type=int, default=None, metavar="N",
                       help="machines taking part (each runs the same command; default: torchrun's, else 1)")
        t.add_argument("--precision", choices=("auto", "32", "bf16"), default="auto",
                       help="auto: bf16 autocast on a GPU that has it, else 32-bit (default: auto)")
        t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="replace a preset setting, e.g. diffusion.prediction=epsilon, denoiser.dropout=0.2, "
                            "train.grad_accum=4 (repeatable)")
        t.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
        t.add_argument("--audio-encoder", metavar="KIND=DIR", default=None,
                       help="read the cache's features of these SSL encoder weights (default: the preset's kind "
                            "if the cache holds it, else the mel path)")
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="metric table with controls, under a recorded protocol",
                       description=_about("evaluate")["description"].replace("%", "%%")
                       + "\n\nEvaluate one model (RUN), or with --folds K train and evaluate a model per fold of the cache "
                       "(every frame held out once) and report mean and 95%% interval over folds.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("run", nargs="?", default=None,
                   help="model folder, model.safetensors or training run; 'bundled' for the default model (not with --folds)")
    e.add_argument("--data", required=True, help="cache folder from `cospeech prepare`")
    e.add_argument("--split", default=None, help="which split to evaluate (default: test; not with --folds)")
    e.add_argument("--samples", type=int, default=3, help="generations per clip (default 3), for mean and 95%% interval")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    e.add_argument("--evaluator", default=None, help="evaluator folder (default: the bundled one)")
    e.add_argument("--json", default=None, help="write the report (results + protocol) here")
    e.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar (shown only on a terminal)")
    f = e.add_argument_group("folds", "train a model per fold and evaluate its held-out part")
    f.add_argument("--folds", type=int, default=None, metavar="K",
                   help="K folds over the cache's held-out parts (short takes whole, long takes in segments)")
    f.add_argument("-o", "--out", default=None, help="folder of the per-fold runs and report.json (resumable)")
    f.add_argument("--preset", default=None, help="training preset (default: default)")
    f.add_argument("--backbone", default=None, help="override the preset's backbone")
    f.add_argument("--train-steps", type=int, default=None,
                   help="training steps per fold (default: the largest --eval-at, else the preset's)")
    f.add_argument("--eval-at", default=None, metavar="STEPS", help="comma-separated checkpoints to evaluate too, e.g. 250,500")
    f.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="replace a preset setting, e.g. diffusion.prediction=epsilon (repeatable)")
    f.add_argument("--segment", type=float, default=None, help="seconds per held-out part of a long take (default 10)")
    f.add_argument("--guard", type=float, default=None,
                   help="seconds left out of training either side of a held-out part (default 2)")
    e.set_defaults(func=_evaluate)

    te = sub.add_parser("train-evaluator", **_about("train-evaluator"),
                        help="train the motion auto-encoder behind FGD/FED/FMD")
    te.add_argument("--data", required=True, help="cache folder (its train split is used)")
    te.add_argument("-o", "--out", required=True, help="evaluator folder")
    te.add_argument("--steps", type=int, default=3000)
    te.add_argument("--window", type=int, default=32, help="frames per evaluated window (multiple of 4)")
    te.add_argument("--seed", type=int, default=0)
    te.add_argument("-q", "--quiet", action="store_true", help="no progress bar (shown only on a terminal)")
    te.set_defaults(func=_train_evaluator)

    b = sub.add_parser("benchmark", **_about("benchmark"),
                       help="time and peak memory of training and inference vs sequence length; "
                                         "--cli: where the time of `cospeech generate` goes; --train-profile: of a training step")
    what = b.add_mutually_exclusive_group()
    what.add_argument("--cli", action="store_true",
                      help="time `cospeech generate` (start-up, first run, each phase, each writer) against `import torch`")
    what.add_argument("--train-profile", action="store_true",
                      help="shares of data loading, forward, backward, optimiser step and checkpointing in `cospeech train`")
    b.add_argument("--long", default=None, metavar="WAV",
                   help="--cli: the long input (default: the shared 62 s BEAT2 take when present; '' = none)")
    b.add_argument("--train-data", default=None, metavar="CACHE",
                   help="--train-profile: a feature cache (default: the shared BEAT2 and SHOW clips, prepared first)")
    b.add_argument("--train-steps", type=int, default=30, help="--train-profile: steps per preset (default 30)")
    b.add_argument("--presets", nargs="?", const="", default=None, metavar="NAMES",
                   help="alone: compare the presets (parameters, training step time and peak memory at each paper "
                        "window, generation frames/s), NAMES or every full-size one and diffsheg@realtime; "
                        "with --train-profile: presets to profile (default tiny,default)")
    b.add_argument("--joiners", default="fused,foppas", help="--presets: joiners timed in generation (default fused,foppas)")
    b.add_argument("--dtypes", default="float32,bfloat16",
                   help="--presets: dtypes timed in generation (default float32,bfloat16)")
    b.add_argument("--backbones", default="transformer,mamba2",
                   help="comma-separated; name or name:key=value:... mixer options (first = baseline of the ratios); "
                        "'none' = the same model without a mixer (the floor both pay)")
    b.add_argument("--lengths", default="240,960,3840", help="frames per sequence (default 240,960,3840)")
    b.add_argument("--mode", default="train,infer", help="train, infer or both (default)")
    b.add_argument("--width", type=int, default=256)
    b.add_argument("--depth", type=int, default=8)
    b.add_argument("--heads", type=int, default=4, help="attention heads (transformer)")
    b.add_argument("--batch", type=int, default=8)
    b.add_argument("--reps", type=int, default=3, help="timed repetitions per configuration or command (median reported)")
    b.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    b.add_argument("--threads", type=int, default=2, help="CPU threads")
    b.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                   help="on a shared machine: before each configuration wait up to this long for idle CPUs")
    b.add_argument("--json", default=None, help="also write the report here")
    st = b.add_argument_group("streaming", "--streaming: a StreamSession fed speech at real-time pace (simulated clock)")
    st.add_argument("--streaming", action="store_true",
                    help="measure streaming instead: motion frames/s, first-motion and steady latency, "
                         "FGD and jerk for each sampler and step count")
    st.add_argument("-m", "--model", default=None, help="model (default: the bundled one)")
    st.add_argument("--speech", default=None, help="speech file (default: the bundled sample)")
    st.add_argument("--reference", default=None, metavar="NPZ", help="the real SMPL-X motion of --speech, for FGD")
    st.add_argument("--seconds", type=float, default=None, help="seconds of speech (repeated when shorter)")
    st.add_argument("--steps", default="4,8,25", help="comma-separated denoising steps (default 4,8,25)")
    st.add_argument("--samplers", default="ddim,dpmsolver", help="comma-separated (default ddim,dpmsolver)")
    st.add_argument("--jump-counts", default="0",
                    help="comma-separated RePaint jump counts (jump length 1) to stream each DDIM/DDPM row with (default 0)")
    st.add_argument("--window", type=int, default=40, help="frames per window (default 40)")
    st.add_argument("--overlap", type=int, default=27, help="frames held to the emitted tail (default 27: 10 new per window)")
    st.add_argument("--lookahead", type=float, default=0.1, help="look-ahead in seconds (default 0.1)")
    st.add_argument("--chunk", type=float, default=0.02, help="seconds of speech per pushed chunk (default 0.02)")
    st.add_argument("--seed", type=int, default=0)
    st.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="what a push costs on the simulated clock: wall time, or the process's CPU time "
                         "(what it takes on a core of its own, on a machine busy with other work)")
    b.set_defaults(func=_benchmark)

    x = sub.add_parser("export", **_about("export"),
                       help="a motion file (npz, BVH, Live Link CSV) -> another format (glb, ARKit curves, ...)")
    if want("export"):
        from ..export import EXPORTERS
        from ..export.convert import READERS
        x.add_argument("motion", help="motion file: " + ", ".join(f"{s} ({what})" for s, what in READERS.items()))
        x.add_argument("--to", required=True, metavar="FORMAT",
                       help="; ".join(f"{e.name}: {e.description}" for e in EXPORTERS.values()))
        x.add_argument("-o", "--out", default=None,
                       help="output file, or a folder for <stem><suffix> (default: beside the input)")
        x.add_argument("--fps", type=float, default=None,
                       help="the real frame rate of a BVH or CSV whose header says otherwise")
    x.set_defaults(func=_export)

    s = sub.add_parser("serve", **_about("serve"),
                       help="WebSocket streaming server (speech in, motion frames out) and a browser viewer")
    s.add_argument("-m", "--model", default=None, help="model folder, model.safetensors or training run (default: bundled)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)")
    s.add_argument("--port", type=int, default=8000, help="TCP port (default: %(default)s; 0 picks a free one)")
    s.add_argument("--max-sessions", type=int, default=64,
                   help="streams open at once; more are closed with 1013 (default: %(default)s)")
    s.add_argument("--max-message-bytes", type=int, default=1 << 20,
                   help="largest message a client may send; larger ones close the stream with 1009 (default: %(default)s)")
    s.add_argument("--idle-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="close a stream with 1008 after this long without a message (default: %(default)s)")
    s.add_argument("--max-backlog", type=float, default=60.0, metavar="SECONDS",
                   help="close a stream with 1013 when this much of its speech waits for the model (default: %(default)s)")
    s.add_argument("--workers", type=int, default=2, help="threads running the model (default: %(default)s)")
    s.add_argument("--lookahead", type=float, default=None, metavar="SECONDS",
                   help="speech each session waits for before it moves (default: the session's own)")
    s.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    s.add_argument("--seed", type=int, default=0, help="random seed of every session unless its header sets one")
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    s.set_defaults(func=_serve)

    r = sub.add_parser("retarget", **_about("retarget"),
                       help="SMPL-X motion -> a BVH on another skeleton (BEAT's, Mixamo-named rigs)")
    r.add_argument("motion", help="SMPL-X motion: .npz or a BVH with SMPL-X joint names")
    r.add_argument("--to", required=True, metavar="RIG.bvh", help="a BVH whose skeleton (hierarchy, offsets, unit) to use")
    r.add_argument("-o", "--out", required=True, help="the BVH to write")
    r.add_argument("--fps", type=float, default=None, help="the real frame rate of a motion BVH whose header says otherwise")
    r.set_defaults(func=_retarget)

    ps = sub.add_parser("presets", **_about("presets"), help="the training presets: paper, parameter count and defaults")
    ps.add_argument("--json", action="store_true", help="as JSON")
    ps.set_defaults(func=_presets)

    i = sub.add_parser("info", **_about("info"),
                       help="describe a model")
    i.add_argument("model", nargs="?", default=None,
                   help="model folder, model.safetensors or training run (default: the bundled model)")
    i.add_argument("-m", "--model", dest="model_option", default=None, help="the same, as an option")
    i.set_defaults(func=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..atomic import raise_on_sigterm

    raise_on_sigterm()  # SIGTERM unwinds like Ctrl-C: no temporary file is left beside the outputs
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), "")
    args = build_parser(only=command).parse_args(argv)
    try:
        return args.func(args)
    except CospeechError as err:
        print(f"cospeech: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cospeech: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
