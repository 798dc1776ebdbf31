"""The training loop (METHOD §3): synthetic bursts -> `predict` -> annealed loss -> Adam.

Resumable exactly: the data set is a pure function of the sample index, the batch at step t
takes indices ``((t · world + rank) · batch + j)``, and checkpoints (written atomically every few
minutes and at the end) hold model, optimiser, step and RNG states. Under ``torchrun`` the same
loop runs DistributedDataParallel (gloo on CPU, nccl on CUDA); rank 0 alone writes.

Run folder: ``config.toml`` (resolved), ``checkpoint.pt``, ``metrics.jsonl``, ``model.safetensors``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from burstkpn.config import from_dict, to_dict, to_toml
from burstkpn.data import COLOUR_MODES, BurstDataset, ColourBurstDataset, TrainingDataConfig
from burstkpn.errors import BurstKPNError
from burstkpn.hardware import native_bf16
from burstkpn.io.images import atomic_output, check_output_folder, make_folder
from burstkpn.losses import LossConfig, teacher_regret, total_loss
from burstkpn.metrics import mean_finite, psnr
from burstkpn.models.kpn import (
    GROWABLE,
    ModelConfig,
    build_model,
    can_grow,
    grow_state,
    predict,
    unwrap,
)
from burstkpn.weights import load_model, resolve_model, save_weights, state_digest

VAL_BASE = 2**61  # validation bursts are items VAL_BASE + j: never reached by training indices
COLOUR_LOSSES = ("raw", "processed")  # `models.planar.LOSS_SPACES`


@dataclass(frozen=True)
class ColourConfig:
    """The joint colour/raw model (`burstkpn.models.planar`) on the colour stream (`data.ColourBurstDataset`).

    ``mode`` "none" (the default) trains the grayscale models as always; "bayer": 4 packed RGGB planes at
    half resolution (``data.burst.size`` is the mosaic side), "rgb": 3 planes. The planar model is
    ``[model]`` plus the planes (`PlanarConfig.from_model`); ``--init`` with grayscale KPN weights grows them
    into it (`planar_from_gray`). ``loss``: "raw" (the grayscale loss on every plane in linear raw) or
    "processed" (after each burst's own processing, `models.planar.planar_loss`).
    """

    mode: str = "none"
    shared_kernels: bool = False
    loss: str = "raw"

    def __post_init__(self) -> None:
        if self.mode not in ("none", *COLOUR_MODES):
            raise BurstKPNError(f"colour mode must be none, {' or '.join(COLOUR_MODES)}, got {self.mode!r}")
        if self.loss not in COLOUR_LOSSES:
            raise BurstKPNError(f"colour loss must be one of {', '.join(COLOUR_LOSSES)}, got {self.loss!r}")

    @property
    def planar(self) -> bool:
        return self.mode != "none"

    @property
    def planes(self) -> int:
        return 4 if self.mode == "bayer" else 3


RUN_FIELDS = ("steps", "checkpoint_minutes", "checkpoint_every", "log_every", "val_every", "threads", "workers")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; defaults are the authors' (Adam 1e-4, batch 4, 128², N=8, K=5).

    ``data.burst.size`` is the patch side and ``data.burst.frames`` must equal ``model.frames``.
    """

    steps: int = 500_000  # the run's total number of optimiser steps (the authors' limit)
    batch_size: int = 4
    lr: float = 1e-4
    lr_schedule: str = "constant"  # "constant" | "cosine" (from lr to lr_min over `steps`)
    lr_min: float = 0.0
    # linear warm-up: a fresh Adam on trained weights (--init) takes ~lr-sized steps on every weight at
    # once; measured: kpn grown by a coarse stage fell from 30.20 to 29.15 dB val PSNR in 500 steps at 1.5e-4
    lr_warmup: int = 0
    seed: int = 0  # model initialisation and the data stream
    bf16: bool = True  # bf16 autocast for the network where the hardware has bf16 units (kernels and loss stay float32)
    allocator_fix: bool = True  # glibc mallopt: keep big buffers mapped (1.3-1.5x on CPU)
    threads: int = 0  # torch threads per process; 0 = torch's default
    workers: int = 0  # DataLoader worker processes synthesising bursts
    checkpoint_minutes: float = 5.0
    checkpoint_every: int = 0  # also every this many steps (0: by time only)
    log_every: int = 10
    val_every: int = 500
    val_bursts: int = 16
    # names (prefixes) of the only parameters to train, e.g. ["gate."] to fit a grown robustness gate on a
    # frozen network (no fresh-Adam dip on the rest, ~2x faster steps); empty: all
    trainable: tuple[str, ...] = ()
    # >0: keep an exponential moving average of the weights (decay per step, ramped as (1+t)/(10+t) early
    # on); validation, snapshots and the final weights use it. 0 (the paper): the raw weights.
    ema_decay: float = 0.0
    fixed_bursts: int = 0  # >0: cycle over this many bursts instead of fresh ones (overfitting checks, tests)
    # frozen weights (a path or a shipped name) that ``loss.regret_weight`` holds the run to, burst by burst
    # (`losses.teacher_regret`); run through `predict` like the model, in float32 and without gradients, every step
    # once set; a grayscale teacher of a colour run runs per plane (`models.planar.predict_per_plane`, aligned with
    # the run's own green-plane shifts) and holds each plane of each burst (also at weight 0: the logged regret_db / worse_than_teacher come from it)
    teacher: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: TrainingDataConfig = field(default_factory=TrainingDataConfig)
    colour: ColourConfig = field(default_factory=ColourConfig)

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or self.lr <= 0 or self.val_bursts < 0 or self.fixed_bursts < 0 or self.lr_warmup < 0:
            raise BurstKPNError("steps >= 0, batch_size >= 1, lr > 0, lr_warmup >= 0, val_bursts >= 0 and fixed_bursts >= 0 are required")
        if not 0.0 <= self.ema_decay < 1.0:
            raise BurstKPNError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.log_every < 1 or self.val_every < 1 or self.checkpoint_every < 0:
            raise BurstKPNError("log_every and val_every must be >= 1, checkpoint_every >= 0")
        if self.lr_schedule not in ("constant", "cosine"):
            raise BurstKPNError(f"lr_schedule must be constant or cosine, got {self.lr_schedule!r}")
        if self.loss.regret_weight > 0 and not self.teacher:
            raise BurstKPNError("loss.regret_weight > 0 needs a teacher (teacher = weights path or shipped name)")
        if self.data.burst.frames != self.model.frames:
            raise BurstKPNError(
                f"data.burst.frames ({self.data.burst.frames}) must equal model.frames ({self.model.frames})"
            )


def with_overrides(cfg: TrainConfig, patch_size: int | None = None, frames: int | None = None, **fields) -> TrainConfig:
    """``cfg`` with top-level fields replaced, and the patch size / frame count set where they live."""
    burst = cfg.data.burst
    if patch_size is not None:
        burst = replace(burst, size=patch_size)
    model = fields.pop("model", cfg.model)
    if frames is not None:
        burst, model = replace(burst, frames=frames), replace(model, frames=frames)
    return replace(cfg, model=model, data=replace(cfg.data, burst=burst), **fields)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The schedule's rate at ``step``, ramped linearly from 0 over the first ``lr_warmup`` steps."""
    ramp = min(1.0, (step + 1) / cfg.lr_warmup) if cfg.lr_warmup > 0 else 1.0
    if cfg.lr_schedule == "cosine" and cfg.steps > 0:
        return ramp * (cfg.lr_min + (cfg.lr - cfg.lr_min) * 0.5 * (1 + math.cos(math.pi * min(step / cfg.steps, 1.0))))
    return ramp * cfg.lr


def batch_indices(step: int, batch_size: int, rank: int = 0, world: int = 1, fixed: int = 0) -> list[int]:
    """Data-set indices of the batch that ``rank`` trains on at ``step`` (modulo ``fixed`` when > 0)."""
    first = (step * world + rank) * batch_size
    return [k % fixed if fixed else k for k in range(first, first + batch_size)]


class StepBatches(torch.utils.data.Sampler):
    """Batch sampler yielding `batch_indices` for steps start .. steps-1."""

    def __init__(self, start: int, steps: int, batch_size: int, rank: int, world: int, fixed: int = 0):
        self.start, self.steps, self.batch_size, self.rank, self.world, self.fixed = start, steps, batch_size, rank, world, fixed

    def __iter__(self):
        return (batch_indices(t, self.batch_size, self.rank, self.world, self.fixed) for t in range(self.start, self.steps))

    def __len__(self) -> int:
        return max(self.steps - self.start, 0)


def fix_allocator() -> None:
    """glibc: keep large buffers mapped and the heap untrimmed, instead of mmap/munmap every step."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD


@dataclass
class Runtime:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def start_runtime() -> Runtime:
    """Join the torchrun process group if there is one; pick CUDA when available."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Runtime(rank, world, device)


def load_dataset(images, cfg: TrainConfig, progress: bool) -> BurstDataset | ColourBurstDataset:
    """The training bursts; a folder of too-small photos names the largest patch size that fits."""
    try:
        if cfg.colour.planar:
            return ColourBurstDataset(images, cfg.data, seed=cfg.seed, colour=cfg.colour.mode, progress=progress)
        return BurstDataset(images, cfg.data, seed=cfg.seed, progress=progress)
    except BurstKPNError as exc:
        if "at least" not in str(exc):
            raise
        burst = cfg.data.burst
        sides = [min(_image_shape(p)) for p in _paths(images)]
        fit = (max(sides) // burst.downsample - 2 * burst.large_shift) if sides else 0
        hint = (f"the largest photo here has a {max(sides)}-px short side, which fits --patch-size {fit} or less" if fit > 0
                else "use larger photos")
        raise BurstKPNError(
            f"{exc}: a {burst.size}-px patch with ±{burst.large_shift}-px shifts at {burst.downsample}x "
            f"downsampling needs {burst.window}-px photos; {hint}"
        ) from None


def _paths(images):
    from burstkpn.data import image_paths

    return image_paths(images)


def _image_shape(path) -> tuple[int, int]:
    from burstkpn.io.images import read_image

    with contextlib.suppress(BurstKPNError):
        return read_image(path).pixels.shape[:2]
    return (0, 0)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def validate(model, batches: list[dict], amp: bool) -> float:
    """Mean PSNR (metrics.psnr protocol) of the model's output over the fixed validation bursts (`mean_finite`)."""
    core = unwrap(model)
    was_training = core.training
    core.eval()
    scores = []
    with torch.no_grad():
        for batch in batches:
            out = predict(core, batch["burst"], batch["sigma_read"], batch["sigma_shot"], amp=amp, valid=batch["valid"])["output"]
            for est, clean, wl in zip(out.cpu().numpy(), batch["clean"].cpu().numpy(), batch["white_level"].cpu().numpy()):
                scores.append(psnr(est, clean, float(wl)))
    core.train(was_training)
    return mean_finite(scores)


def rng_states() -> dict:
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class WeightAverage:
    """Exponential moving average of a model's weights (Polyak averaging): smooths out the last steps'
    noise, which a small-batch run at a high learning rate has plenty of.

    After step t (1-based): avg = d·avg + (1 − d)·weights with d = min(decay, (1 + t) / (10 + t)), so the
    first steps are not averaged with the initial weights for long. Non-float buffers and frozen parameters
    are copied.
    """

    def __init__(self, model, decay: float, state: dict | None = None):
        self.decay = decay
        current = unwrap(model).state_dict()
        self.state = {k: v.detach().clone() for k, v in (state or current).items()}

    def update(self, model, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        core = unwrap(model)
        # frozen weights (``trainable``) are copied: averaging a constant drifts it by float rounding (1e-6 of
        # it after 2,500 steps), and a part fitted on frozen weights must sit on them exactly (`save_weights` base)
        frozen = {name for name, p in core.named_parameters() if not p.requires_grad}
        with torch.no_grad():
            for name, value in core.state_dict().items():
                if value.is_floating_point() and name not in frozen:
                    self.state[name].mul_(d).add_(value.detach(), alpha=1 - d)
                else:
                    self.state[name].copy_(value)

    @contextlib.contextmanager
    def applied(self, model):
        """The averaged weights in ``model`` inside the block, its own weights back after."""
        core = unwrap(model)
        own = {k: v.detach().clone() for k, v in core.state_dict().items()}
        core.load_state_dict(self.state)
        try:
            yield core
        finally:
            core.load_state_dict(own)


def save_checkpoint(path: Path, model, optimizer, step: int, cfg: TrainConfig, average: WeightAverage | None = None) -> None:
    state = {"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(), "step": step,
             "config": to_dict(cfg), "rng": rng_states()}
    if average is not None:
        state["ema"] = average.state
    with atomic_output(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types for a damaged file
        raise BurstKPNError(f"{path}: unreadable checkpoint ({str(exc).splitlines()[0][:120]})") from None


def resolve_resume(cfg: TrainConfig, checkpoint: dict, path: Path) -> None:
    """Raise unless ``cfg`` equals the checkpoint's config in everything but run-control fields."""
    try:  # through the dataclass, so that fields added since the checkpoint compare at their defaults
        saved = to_dict(from_dict(TrainConfig, checkpoint["config"]))
    except BurstKPNError:
        saved = checkpoint["config"]
    now = to_dict(cfg)
    changed = sorted(k for k in set(saved) | set(now) if k not in RUN_FIELDS and saved.get(k) != now.get(k))
    if changed:
        raise BurstKPNError(f"{path}: cannot resume with a changed config ({', '.join(changed)}); use a new --out")


def trim_metrics(path: Path, last_step: int) -> None:
    """Drop metric rows logged after ``last_step`` (work that a resumed run redoes)."""
    if not path.exists():
        return
    rows = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= last_step]
    with atomic_output(path) as tmp:
        tmp.write_text("".join(row + "\n" for row in rows))


class StopFlag:
    """SIGINT/SIGTERM set a flag; the loop checkpoints at the end of the step and stops."""

    def __init__(self, active: bool):
        self.stop = False
        self.previous = {}
        if active:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.stop = True

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def init_lineage(path, info: dict) -> dict:
    """What a run started with ``--init`` inherits: the weights' path and their total steps and hours
    (from their card, or their own lineage), so that a card can add them up."""
    card = info.get("card") or {}
    parent = info.get("init") or {}
    steps = card.get("steps", int(info.get("steps", 0)) + int(parent.get("total_steps", 0)))
    hours = card.get("training_hours", float(parent.get("training_hours", 0.0)))
    return {"weights": str(path), "name": card.get("name", ""), "total_steps": int(steps), "training_hours": float(hours)}


def planar_config(cfg: TrainConfig):
    """The planar model a colour run trains: ``cfg.model`` plus ``cfg.colour``'s planes."""
    from burstkpn.models.planar import PlanarConfig

    return PlanarConfig.from_model(cfg.model, cfg.colour.planes, cfg.colour.shared_kernels)


# parts a trained planar model can grow by: they change neither its inputs nor its head's outputs
PLANAR_GROWABLE = {"agreement_blend", "robust_gate", "normalize_kernels", "dc_bound"}


def init_planar(model, cfg: TrainConfig, init, main: bool):
    """``--init`` weights for a colour run -> (planar model, cfg with the model they give): grayscale KPN weights
    are grown (`GROWABLE` parts, as for gray runs) and spread over the planes (`planar_from_gray`); planar
    weights are grown by `PLANAR_GROWABLE` parts the run's config adds, else taken as they are, with their config."""
    from burstkpn.models.planar import PlanarConfig, PlanarKPN, planar_from_gray

    if isinstance(model.config, PlanarConfig):
        if model.config.planes != cfg.colour.planes:
            raise BurstKPNError(f"{init}: a {model.config.planes}-plane model cannot train on {cfg.colour.mode} bursts")
        added = [name for name in GROWABLE if getattr(cfg.model, name) != getattr(model.config, name)]
        if can_grow(model.config.base, cfg.model) and set(added) <= PLANAR_GROWABLE:
            config = PlanarConfig.from_model(cfg.model, model.config.planes, model.config.shared_kernels, model.config.align_planes)
            grown = PlanarKPN(config)
            grown.load_state_dict(grow_state(model.state_dict(), grown))
            if main:
                print(f"burstkpn: {init} grown/changed: {', '.join(added) or 'prealign'}", file=sys.stderr)
            return grown.train(), replace(cfg, model=config.base, colour=replace(cfg.colour, shared_kernels=config.shared_kernels))
        if model.config != planar_config(cfg) and main:
            print(f"burstkpn: using the model config stored in {init}", file=sys.stderr)
        return model, replace(cfg, model=model.config.base, colour=replace(cfg.colour, shared_kernels=model.config.shared_kernels))
    if can_grow(model.config, cfg.model):
        grown = build_model(cfg.model)
        grown.load_state_dict(grow_state(model.state_dict(), grown, model.config))
        added = [name for name in (*GROWABLE, "prealign") if getattr(cfg.model, name) != getattr(model.config, name)]
        model = grown
        if main:
            print(f"burstkpn: {init} grown/changed: {', '.join(added)}", file=sys.stderr)
    elif model.config != cfg.model and main:
        print(f"burstkpn: using the model config stored in {init}", file=sys.stderr)
    cfg = replace(cfg, model=model.config)
    planar = planar_from_gray(model, cfg.colour.planes, cfg.colour.shared_kernels)
    if main:
        print(f"burstkpn: {init} grown into a {cfg.colour.planes}-plane {cfg.colour.mode} model", file=sys.stderr)
    return planar.train(), cfg


def fold_planes(output: torch.Tensor, held: torch.Tensor, clean: torch.Tensor, white_level: torch.Tensor):
    """(B, [C,] H, W) outputs of the run and its teacher, the clean targets and (B,) white levels -> the same with
    planes folded into the batch, so that `losses.teacher_regret` holds every plane of every burst on its own."""
    if output.ndim == 3:
        return output, held, clean, white_level
    b, c, h, w = output.shape
    return (output.reshape(b * c, h, w), held.reshape(b * c, h, w), clean.reshape(b * c, h, w),
            white_level.reshape(b).repeat_interleave(c))


def load_teacher(name: str, device: torch.device):
    """The frozen teacher of ``TrainConfig.teacher``: weights path or shipped name -> eval model, no gradients."""
    teacher = resolve_model(name)[0].to(device)
    if hasattr(teacher.config, "planes"):
        raise BurstKPNError(f"teacher {name}: a planar (colour/raw) model cannot teach a grayscale run")
    for param in teacher.parameters():
        param.requires_grad_(False)
    return teacher.eval()


def train(cfg: TrainConfig, images, run_dir: str | Path, resume: bool = False, init: str | Path | None = None,
          progress: bool = True) -> dict:
    """Train (or resume) the run in ``run_dir`` up to ``cfg.steps``; returns a summary dict."""
    from tqdm import tqdm

    run_dir = check_output_folder(run_dir)
    ckpt_path, metrics_path = run_dir / "checkpoint.pt", run_dir / "metrics.jsonl"
    if cfg.allocator_fix:
        fix_allocator()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    rt = start_runtime()
    checkpoint, lineage = None, None
    if ckpt_path.exists():
        if not resume:
            raise BurstKPNError(f"{run_dir} already holds a training run: pass --resume to continue it, or choose another --out")
        checkpoint = load_checkpoint(ckpt_path)
        resolve_resume(cfg, checkpoint, ckpt_path)

    torch.manual_seed(cfg.seed)
    if checkpoint is None and init is not None and cfg.colour.planar:
        model = load_model(init).train()
        lineage = init_lineage(init, model.info)
        model, cfg = init_planar(model, cfg, init, rt.main)
    elif checkpoint is None and init is not None:
        model = load_model(init).train()
        lineage = init_lineage(init, model.info)
        if can_grow(model.config, cfg.model):
            # grows validity/mismatch inputs or a coarse stage (zero weights: the same function at step 0),
            # or changes the pre-alignment
            grown = build_model(cfg.model)
            grown.load_state_dict(grow_state(model.state_dict(), grown, model.config))
            added = [name for name in (*GROWABLE, "prealign") if getattr(cfg.model, name) != getattr(model.config, name)]
            model = grown.train()
            if rt.main:
                print(f"burstkpn: {init} grown/changed: {', '.join(added)}", file=sys.stderr)
        elif model.config != cfg.model and rt.main:
            print(f"burstkpn: using the model config stored in {init}", file=sys.stderr)
        cfg = replace(cfg, model=model.config)
    elif cfg.colour.planar:
        from burstkpn.models.planar import build_planar

        model = build_planar(planar_config(cfg))
    else:
        model = build_model(cfg.model)
    model.to(rt.device)
    if cfg.trainable:
        for name, param in model.named_parameters():
            param.requires_grad_(name.startswith(tuple(cfg.trainable)))
    trained = [p for p in model.parameters() if p.requires_grad]
    if not trained:
        raise BurstKPNError(f"no model parameter starts with any of trainable = {list(cfg.trainable)}")
    optimizer = torch.optim.Adam(trained, lr=cfg.lr)
    start = 0
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        start = int(checkpoint["step"])
        set_rng_states(checkpoint["rng"])
    average = WeightAverage(model, cfg.ema_decay, checkpoint.get("ema") if checkpoint else None) if cfg.ema_decay else None
    teacher, teacher_record = None, None
    if cfg.teacher:
        teacher = load_teacher(cfg.teacher, rt.device)
        teacher_record = {"teacher": cfg.teacher, "digest": state_digest(teacher.state_dict())}
        if checkpoint is not None and (run_dir / "teacher.json").exists():  # a path names a file, not weights
            started = json.loads((run_dir / "teacher.json").read_text()).get("digest", "")
            if started != teacher_record["digest"]:
                raise BurstKPNError(f"teacher {cfg.teacher}: not the weights this run started with (digest "
                                    f"{teacher_record['digest'][:12]}, was {started[:12]}): restore them or start a new run")
    dataset = load_dataset(images, cfg, progress and rt.main)  # bad photos fail before the run folder is written
    if rt.main:
        make_folder(run_dir)
        with atomic_output(run_dir / "config.toml") as tmp:
            tmp.write_text(to_toml(cfg))
        if lineage is not None:
            with atomic_output(run_dir / "init.json") as tmp:
                tmp.write_text(json.dumps(lineage, indent=2) + "\n")
        if teacher_record is not None:
            with atomic_output(run_dir / "teacher.json") as tmp:
                tmp.write_text(json.dumps(teacher_record, indent=2) + "\n")
        if checkpoint is not None:
            trim_metrics(metrics_path, start)
    if rt.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    amp = cfg.bf16 and native_bf16(rt.device.type)
    if cfg.bf16 and not amp and rt.main:
        print(f"burstkpn: this {rt.device.type} has no native bf16 (emulated it is ~20x slower): training in float32", file=sys.stderr)
    val_batches = []
    if rt.main:
        val_items = [dataset[VAL_BASE + j] for j in range(cfg.val_bursts)]
        val_batches = [to_device(torch.utils.data.default_collate(val_items[i : i + cfg.batch_size]), rt.device)
                       for i in range(0, len(val_items), cfg.batch_size)]
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=StepBatches(start, cfg.steps, cfg.batch_size, rt.rank, rt.world, cfg.fixed_bursts),
                                         num_workers=cfg.workers, pin_memory=rt.device.type == "cuda")
    params = sum(p.numel() for p in model.parameters())
    if rt.main:
        if cfg.trainable:
            print(f"burstkpn: training only {sum(p.numel() for p in trained):,} parameters ({', '.join(cfg.trainable)})", file=sys.stderr)
        print(f"training {cfg.model.kind} ({params / 1e6:.2f}M params, widths {list(cfg.model.widths)}) on {len(dataset.images)} "
              f"images, {rt.world} x {rt.device.type}{' bf16' if amp else ''}, batch {cfg.batch_size}, "
              f"{cfg.data.burst.size}² patches, steps {start} -> {cfg.steps}, run folder {run_dir}", file=sys.stderr)

    def log(row: dict) -> None:
        with open(metrics_path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def validate_now() -> float:  # the weights a snapshot or the final file would hold
        with average.applied(model) if average else contextlib.nullcontext(model) as shown:
            if cfg.colour.planar:
                from burstkpn.models.planar import validate_planar

                return validate_planar(shown, val_batches, amp)
            return validate(shown, val_batches, amp)

    if rt.main and start == 0 and cfg.val_bursts:
        log({"step": 0, "val_psnr": validate_now()})
    stop = StopFlag(active=rt.world == 1)
    bar = tqdm(total=cfg.steps, initial=start, unit="step", disable=not (progress and rt.main), dynamic_ncols=True)
    last_ckpt, window_start, window_losses, window_steps = time.monotonic(), time.monotonic(), [], 0
    step, start_time, last = start, time.monotonic(), {}
    model.train()
    try:
        for batch in loader:
            batch = to_device(batch, rt.device)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, cfg)
            if cfg.colour.planar:
                from burstkpn.models.planar import planar_loss, predict_per_plane, predict_planar

                result = predict_planar(model, batch["burst"], batch["sigma_read"], batch["sigma_shot"], amp=amp,
                                        valid=batch["valid"])
                loss, parts = planar_loss(result, batch, step, cfg.loss, cfg.colour.loss)
            else:
                result = predict(model, batch["burst"], batch["sigma_read"], batch["sigma_shot"], amp=amp, valid=batch["valid"])
                loss, parts = total_loss(result, batch["clean"], batch["white_level"], step, cfg.loss)
            if teacher is not None:
                with torch.no_grad():
                    if cfg.colour.planar:  # the per-plane path, aligned once from the green planes as `denoise` does
                        held = predict_per_plane(teacher, batch["burst"], batch["sigma_read"], batch["sigma_shot"],
                                                 valid=batch["valid"], shifts=result.get("shifts"))
                    else:
                        held = predict(teacher, batch["burst"], batch["sigma_read"], batch["sigma_shot"], valid=batch["valid"])["output"]
                regret, per_burst = teacher_regret(*fold_planes(result["output"], held, batch["clean"], batch["white_level"]),
                                                   cfg.loss)
                loss = loss + cfg.loss.regret_weight * regret
                parts["regret_db"] = float(per_burst.mean()) * 10 / math.log(10)
                parts["worse_than_teacher"] = float((per_burst > 0).float().mean())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if average is not None:
                average.update(model, step)
            window_losses.append({"loss": float(loss.detach()), **parts})
            window_steps += 1
            bar.update(1)
            is_last = step == cfg.steps or stop.stop
            if rt.main and (step % cfg.log_every == 0 or step % cfg.val_every == 0 or is_last):
                elapsed = time.monotonic() - window_start
                row = {"step": step, **{k: float(np.mean([w[k] for w in window_losses if k in w]))
                                        for k in window_losses[-1]},
                       "lr": lr_at(step - 1, cfg), "samples_per_s": window_steps * cfg.batch_size * rt.world / elapsed}
                if cfg.val_bursts and (step % cfg.val_every == 0 or is_last):
                    row["val_psnr"] = validate_now()
                log(row)
                last = row
                bar.set_postfix(loss=f"{row['loss']:.4f}", samples_s=f"{row['samples_per_s']:.1f}",
                                **({"val_psnr": f"{row['val_psnr']:.2f}"} if "val_psnr" in row else {}))
                window_start, window_losses, window_steps = time.monotonic(), [], 0
            due = (time.monotonic() - last_ckpt > 60 * cfg.checkpoint_minutes
                   or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0))
            if rt.main and (due or is_last):
                save_checkpoint(ckpt_path, model, optimizer, step, cfg, average)
                last_ckpt = time.monotonic()
            if stop.stop:
                break
    finally:
        bar.close()
        stop.restore()
    if rt.main:
        if step == start:  # nothing to do: make sure the checkpoint exists
            save_checkpoint(ckpt_path, model, optimizer, step, cfg, average)
        if average is not None:  # what the run delivers: the averaged weights
            unwrap(model).load_state_dict(average.state)
        info = {"steps": step, "train": to_dict(cfg)}
        if (run_dir / "init.json").exists():  # started from other weights: say which, and their training
            info["init"] = json.loads((run_dir / "init.json").read_text())
        if teacher_record is not None:
            info["teacher"] = teacher_record
        save_weights(model, run_dir / "model.safetensors", info=info)
    if rt.world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    summary = {"model": unwrap(model), "steps": step, "interrupted": stop.stop and step < cfg.steps, "last": last,
               "wall_s": time.monotonic() - start_time, "run_dir": str(run_dir)}
    return summary
