"""What `cospeech info MODEL` prints: a model's configuration, the data it learned from, its
training metrics and its licence.

Read from the model folder (`model.json`, and `MODEL_CARD.md` when the folder has one, as the
bundled model does), from the training run around a checkpoint (`run.json`, `metrics.jsonl`) and
from the cache the run names (`index.json`: which datasets). The licence of a trained model is
that of its data: a model card's own licence section when there is one, else the terms of each
dataset the cache holds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .generator import load_model, resolve_model_path

# dataset layout -> the terms its recordings come under (see the dataset's own licence before use)
DATASET_LICENCES = {
    "beat2": "BEAT2 (EMAGE): CC BY-NC 4.0, non-commercial; cite Liu et al., BEAT (ECCV 2022) and EMAGE (CVPR 2024)",
    "beat": "BEAT: CC BY-NC 4.0, non-commercial; cite Liu et al., BEAT (ECCV 2022)",
    "show": "SHOW / TalkSHOW: non-commercial research only (SHOW dataset terms; SMPL-X licence); cite Yi et al. (CVPR 2023)",
    "folder": "your own recordings: their own terms",
}
UNKNOWN_LICENCE = "the terms of its training data (not recorded with the model; check the datasets' licences)"


def card_section(card: str, title: str) -> str:
    """The text of `## title` in a markdown model card ('' when absent)."""
    match = re.search(rf"^## {re.escape(title)}\s*\n(.*?)(?=^## |\Z)", card, flags=re.M | re.S)
    return match.group(1).strip() if match else ""


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def describe_model(path: str | Path | None = None) -> dict:
    """A model (None: the bundled one; a model folder, model.safetensors or run folder) -> a dict of
    `config`, `training`, `data`, `metrics` and `licence`, each what could be found."""
    folder = resolve_model_path(path)
    gen = load_model(path)
    cfg, den, dif = gen.cfg, gen.cfg.denoiser, gen.cfg.diffusion
    params = sum(p.numel() for p in gen.denoiser.parameters())
    training = dict(gen.info.get("training", {}))
    card_path = folder / "MODEL_CARD.md"
    card = card_path.read_text() if card_path.exists() else ""
    run = folder.parents[1] if folder.parent.name == "checkpoints" else None
    run_spec = _read_json(run / "run.json") if run else None

    data: dict = {"hash": training.get("data_hash")}
    datasets: list[str] = []
    if run_spec and "data" in run_spec:
        data.update({k: run_spec["data"].get(k) for k in ("root", "takes", "frames")})
        index = _read_json(Path(run_spec["data"].get("root", "")) / "index.json") if run_spec["data"].get("root") else None
        if index:
            datasets = sorted({t["dataset"] for t in index.get("takes", [])})
            data["datasets"] = datasets
    if card and card_section(card, "Training data"):
        data["card"] = card_section(card, "Training data").split("\n\n")[0]

    metrics: dict = {}
    if "first_loss" in training:
        metrics["loss_first"] = training["first_loss"]
    if "loss_smooth" in training:
        metrics["loss_smooth"] = training["loss_smooth"]
    if run and (run / "metrics.jsonl").exists():
        rows = []
        for line in (run / "metrics.jsonl").read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
        if rows:
            best = min(rows, key=lambda r: r["loss_smooth"])
            metrics.update(logged_steps=len(rows), last_step=rows[-1]["step"], lowest_loss_smooth=best["loss_smooth"],
                           lowest_at=best["step"], time_s=rows[-1].get("time_s"))
    if card and card_section(card, "Training run (measured)"):
        metrics["card"] = card_section(card, "Training run (measured)")

    if card and card_section(card, "Licence"):
        licence = card_section(card, "Licence")
    elif datasets:
        licence = "\n".join(f"{d}: {DATASET_LICENCES.get(d, 'see the dataset’s own licence')}" for d in datasets)
    else:
        licence = UNKNOWN_LICENCE
    return {
        "model": str(folder),
        "config": {
            "backbone": den.backbone, "width": den.width, "depth": den.depth, "parameters": params,
            "motion_channels": cfg.spec.dim, "parts": list(cfg.spec.names), "fps": cfg.fps, "window": cfg.window,
            "overlap": cfg.overlap, "prediction": dif.prediction, "sampler": dif.sampler, "sample_steps": dif.sample_steps,
            "guidance": dif.guidance, "speakers": list(cfg.speakers), "default_speaker": cfg.default_speaker,
            "speech_features": gen.info.get("speech_features"), "encoder": cfg.encoder,
            "style_dim": getattr(gen.denoiser, "style_dim", None),
        },
        "training": {k: training[k] for k in ("preset", "step", "world_size", "precision") if k in training}
        | {k: training.get("train", {}).get(k) for k in ("steps", "batch_size", "lr", "seed", "grad_accum")
           if k in training.get("train", {})},
        "data": data,
        "metrics": metrics,
        "licence": licence,
    }


def format_info(d: dict) -> str:
    """`describe_model`'s dict as the text `cospeech info` prints."""
    c, t, data, m = d["config"], d["training"], d["data"], d["metrics"]
    lines = [
        f"model: {d['model']}",
        "config:",
        f"  backbone: {c['backbone']}, width {c['width']}, depth {c['depth']}, {c['parameters'] / 1e6:.2f} M parameters",
        f"  motion: {c['motion_channels']} channels ({', '.join(c['parts'])}), {c['fps']:g} fps, window {c['window']}",
        f"  diffusion: predicts {c['prediction']}, {c['sampler']} {c['sample_steps']} steps, guidance {c['guidance']}",
        f"  speakers: {', '.join(c['speakers'])} (default {c['default_speaker']})",
    ]
    if c.get("speech_features"):  # what the model reads, and a fallback to the mel path when it had to
        lines.append(f"  {c['speech_features']}")
    if c.get("encoder"):
        lines.append(f"  needs: --audio-encoder {c['encoder']['extractor']}=DIR with weights sha256 "
                     f"{c['encoder']['weights_sha256']}")
    if c.get("style_dim"):
        lines.append(f"  style: fuzzy extractor, {c['style_dim']}-value style vectors (--style-from ref.wav)")
    if t:
        lines.append("  training: " + ", ".join(f"{k} {v}" for k, v in t.items()))
    lines.append("data:")
    if data.get("hash"):
        lines.append(f"  data hash: {data['hash']}")
    if data.get("takes") is not None:
        minutes = data["frames"] / c["fps"] / 60
        lines.append(f"  {data['takes']} takes, {data['frames']} frames ({minutes:.1f} min) from {data['root']}")
    if data.get("datasets"):
        lines.append(f"  datasets: {', '.join(data['datasets'])}")
    if data.get("card"):
        lines += [f"  {line}" for line in data["card"].splitlines()]
    if len(lines) and lines[-1] == "data:":
        lines.append("  not recorded (a model without its training run)")
    lines.append("metrics:")
    if "loss_first" in m or "loss_smooth" in m:
        lines.append(f"  training loss (smoothed): {m.get('loss_first', float('nan')):.4f} at the first step -> "
                     f"{m.get('loss_smooth', float('nan')):.4f} at step {t.get('step')}")
    if "logged_steps" in m:
        lines.append(f"  metrics.jsonl: {m['logged_steps']} rows to step {m['last_step']}, lowest smoothed loss "
                     f"{m['lowest_loss_smooth']:.4f} at step {m['lowest_at']}, {m['time_s'] or 0:.0f} s of training")
    if m.get("card"):
        lines += [f"  {line}" for line in m["card"].splitlines()]
    if lines[-1] == "metrics:":
        lines.append("  none recorded")
    lines.append("licence:")
    lines += [f"  {line}" for line in d["licence"].splitlines()]
    return "\n".join(lines)
