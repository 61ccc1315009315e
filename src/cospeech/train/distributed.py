"""Where `cospeech train` runs: one CPU, one GPU, several GPUs or several nodes, through Lightning Fabric.

Why Fabric rather than accelerate: Fabric launches the processes itself, so `cospeech train
--devices 2` works as typed (it starts the same command once more per extra device, each process
told its rank), and it also joins processes that torchrun or SLURM started; the loop stays ours
(its random streams, checkpoints and logs), Fabric adds only DDP, autocast precision, gradient
sync control for accumulation and the collectives. accelerate needs `accelerate launch` (or its
config file) for more than one process, and its `prepare` wraps data loaders we do not use.
Installing either leaves torch as it is.

Every rank draws the same global batch of window indices from the shared data generator and
builds only its own share (`shard`), so the data stream does not depend on the world size and a
run resumes on any number of processes; each rank has its own noise generator (rank 0's is the
single-process one). Only rank 0 writes `run.json`, `metrics.jsonl` and checkpoints; the
checkpoint holds every rank's generator states.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import torch

from ..errors import CospeechError
from ..generator import resolve_device

PRECISIONS = {"32": "32-true", "bf16": "bf16-mixed"}  # --precision -> Fabric's name; auto: bf16 on a GPU that has it


def fabric_precision(precision: str, device: torch.device) -> str:
    """`auto`, `32` or `bf16` -> Fabric's precision name (`auto`: bf16 autocast on a CUDA device
    with bfloat16, else 32-bit)."""
    if precision == "auto":
        return "bf16-mixed" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "32-true"
    if precision not in PRECISIONS:
        raise CospeechError(f"unknown precision {precision!r}; use auto, 32 or bf16")
    return PRECISIONS[precision]


def _launcher_sizes() -> tuple[int | None, int | None]:
    """(processes per node, nodes) that torchrun set in the environment, else (None, None)."""
    local, world = os.environ.get("LOCAL_WORLD_SIZE"), os.environ.get("WORLD_SIZE")
    if local and world:
        return int(local), max(int(world) // int(local), 1)
    return None, None


def launch(device: str = "cpu", devices: int | None = None, num_nodes: int | None = None, precision: str = "auto"):
    """A launched `lightning.fabric.Fabric` for `device` (cpu, cuda, cuda:N, auto).

    devices: processes on this node (GPUs, or CPU processes with gloo); num_nodes: nodes. None
    takes them from torchrun's environment, else 1. With more than one process in all and no
    launcher around, this re-runs the current command once per extra local process (Fabric's
    launcher); the caller then continues as rank 0.
    """
    from lightning_fabric import Fabric

    dev = resolve_device(device)
    env_devices, env_nodes = _launcher_sizes()
    devices = devices if devices is not None else env_devices or 1
    num_nodes = num_nodes if num_nodes is not None else env_nodes or 1
    if devices < 1 or num_nodes < 1:
        raise CospeechError(f"--devices and --num-nodes must be at least 1 (got {devices}, {num_nodes})")
    if env_devices is not None and devices * num_nodes != env_devices * env_nodes:
        raise CospeechError(f"the launcher started {env_devices * env_nodes} processes, but --devices {devices} "
                            f"× --num-nodes {num_nodes} = {devices * num_nodes}; omit them under torchrun")
    if dev.type == "cuda":
        if devices > torch.cuda.device_count():
            raise CospeechError(f"--devices {devices}: this node has {torch.cuda.device_count()} CUDA device(s)")
        chosen = [dev.index] if dev.index is not None and devices == 1 else devices
    else:
        chosen = devices
    distributed = devices * num_nodes > 1
    fabric = Fabric(accelerator=dev.type, devices=chosen, num_nodes=num_nodes,
                    strategy="ddp" if distributed else "auto", precision=fabric_precision(precision, dev))
    fabric.launch()
    return fabric


def shard(pick: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Rank `rank`'s share of the global batch `pick` (B,): a contiguous B / world of it."""
    per = len(pick) // world
    return pick[rank * per : (rank + 1) * per]


def micro_batch(batch_size: int, world: int, grad_accum: int) -> int:
    """Windows per forward pass: the global batch split over processes and accumulation steps."""
    if grad_accum < 1:
        raise CospeechError(f"train.grad_accum must be at least 1 (got {grad_accum})")
    if batch_size % (world * grad_accum):
        raise CospeechError(f"batch size {batch_size} does not split over {world} process(es) × {grad_accum} "
                            "accumulation step(s); choose a multiple of their product")
    return batch_size // (world * grad_accum)


def rank_seed(seed: int, stream: int, rank: int) -> int:
    """The seed of a rank's own random stream (rank 0's is `seed + stream`, as in one process)."""
    if rank == 0:
        return seed + stream
    return int(np.random.SeedSequence([seed, stream, rank]).generate_state(1, np.uint64)[0] >> 1)


def gather_states(fabric, state: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's `state` (a uint8 generator state of the same size on all ranks), on the CPU."""
    if fabric.world_size == 1:
        return [state]
    import torch.distributed as dist

    mine = state.to(fabric.device)
    every = [torch.empty_like(mine) for _ in range(fabric.world_size)]
    dist.all_gather(every, mine)
    return [s.cpu() for s in every]


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 of a module's weights and buffers (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for name, value in module.state_dict().items():
        v = value.detach().cpu().contiguous()
        h.update(f"{name}:{v.dtype}:{tuple(v.shape)}".encode())
        h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


def check_same_weights(fabric, module: torch.nn.Module, step: int, log) -> str:
    """Each rank logs its weights' digest; all ranks must hold the same weights (DDP keeps them so)."""
    digest = weights_digest(module)
    if fabric.world_size == 1:
        return digest
    log(f"cospeech: rank {fabric.global_rank}/{fabric.world_size}: step {step}, weights sha256 {digest}")
    mine = torch.tensor(list(bytes.fromhex(digest)), dtype=torch.uint8)
    every = {bytes(d.tolist()).hex() for d in gather_states(fabric, mine)}
    if len(every) != 1:
        raise CospeechError(f"the {fabric.world_size} processes ended with {len(every)} different weights")
    return digest
