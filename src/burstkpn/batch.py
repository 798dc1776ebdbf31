"""Many bursts: `denoise_bursts`, the library call behind ``burstkpn denoise BURSTS_DIR -o OUT_DIR``.

Each burst (a folder of frames) becomes one output in ``out_dir``, named after the burst
(`io.outputs.output_path` with ``out_dir`` as a folder), written by `io.outputs.write_denoised`:
every file atomically, the settings ``.json`` last. That ``.json`` is the "done" marker:

- **Resume.** A burst whose ``.json`` and every output it lists exist is skipped; anything else is
  (re)done. A killed run leaves complete files or none (plus, at worst, a hidden ``atomic_output``
  temporary file, removed by the next run), so rerunning the same command finishes the rest and
  redoes nothing finished. A failed burst is retried by the next run.
- **Workers.** ``workers=K`` spreads the bursts over K processes (``spawn``); each loads a model once
  and runs torch on cores / K threads.
- **Machines.** Under ``torchrun`` (``WORLD_SIZE`` / ``RANK`` set) rank R takes the bursts i of the
  sorted list with i % WORLD_SIZE == R: every burst is done exactly once, with no process group
  and no communication. Each rank writes its own ``summary-rank{R}.json``.
- **Failures.** A burst that fails (a `BurstKPNError`: a broken frame, mixed sizes, ...) is recorded
  with its one-line error and the rest go on; ``summary.json`` lists what was done, skipped and failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

from burstkpn.errors import BurstKPNError

# the suffixes `write_denoised` writes after a burst's name (main file, previews, report, settings)
OUTPUT_SUFFIXES = (".png", ".tif", ".dng", ".preview.png", ".before.png", ".report.html", ".json")
# options `denoise_burst` takes per burst (the rest of its arguments, progress and log, are the batch's own)
DENOISE_OPTIONS = ("noise", "model", "align", "reference", "tile", "memory_gb", "raw_mode", "gamma_16bit", "ensemble", "bf16",
                   "declip")


# ---------------------------------------------------------------- which bursts


def _frame_files(folder: Path) -> list[Path]:
    from burstkpn.io.bursts import burst_paths

    try:
        return burst_paths([folder])
    except BurstKPNError:
        return []


def find_bursts(folder: str | Path) -> list[Path]:
    """The burst folders in ``folder``: its (non-hidden) subfolders that hold image or raw files, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BurstKPNError(f"{folder}: no such folder")
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and _frame_files(p))


def is_burst_collection(folder: str | Path) -> bool:
    """A folder of burst folders: it holds no image/raw files itself, but has subfolders that do."""
    folder = Path(folder)
    return folder.is_dir() and not _frame_files(folder) and bool(find_bursts(folder))


def read_burst_list(path: str | Path) -> list[Path]:
    """A text file, one burst folder per line (blank lines and ``#`` comments ignored); relative paths
    are relative to the list file's folder."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BurstKPNError(f"{path}: cannot read the burst list ({getattr(exc, 'strerror', None) or exc})") from None
    entries = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not entries:
        raise BurstKPNError(f"{path}: the burst list names no bursts")
    return [p if p.is_absolute() else path.parent / p for p in map(Path, entries)]


def torchrun_rank() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment (``RANK``, ``WORLD_SIZE``); (0, 1) outside torchrun."""
    try:
        return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise BurstKPNError(f"RANK / WORLD_SIZE must be integers, got {os.environ.get('RANK')!r} / "
                            f"{os.environ.get('WORLD_SIZE')!r}") from None


def share(bursts: list, rank: int, world: int) -> list:
    """The bursts rank ``rank`` of ``world`` does: i % world == rank of the (already sorted) list."""
    return [b for i, b in enumerate(bursts) if i % world == rank]


def output_name(folder: Path) -> str:
    """The name `write_denoised` gives a burst's outputs (`io.outputs.burst_name`); the folder's name when it has no frames."""
    from burstkpn.io.outputs import burst_name

    files = _frame_files(folder)
    return burst_name(files) if files else folder.name


def finished(out_dir: Path, name: str) -> list[Path] | None:
    """The outputs of burst ``name`` in ``out_dir`` if its settings ``.json`` (written last) and every
    output it lists exist, else None."""
    marker = out_dir / f"{name}.json"
    try:
        listed = json.loads(marker.read_text())["outputs"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    outputs = [out_dir / Path(str(p)).name for p in listed] if isinstance(listed, list) else []
    return outputs + [marker] if outputs and all(p.is_file() for p in outputs) else None


def remove_stale_temps(out_dir: Path, names: Iterable[str]) -> list[Path]:
    """Remove the hidden temporary files a killed ``atomic_output`` left for these outputs (``.NAME.SUFFIX.xxxx.tmp*``)."""
    wanted = set(names)
    if not wanted or not out_dir.is_dir():
        return []
    suffixes = "|".join(re.escape(s) for s in OUTPUT_SUFFIXES)
    pattern = re.compile(rf"\.(?P<name>.+?)(?:{suffixes})\.[a-z0-9_]+\.tmp.*", re.DOTALL)
    removed = []
    for path in out_dir.iterdir():
        match = pattern.fullmatch(path.name)
        if match and match["name"] in wanted and path.is_file():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


# ---------------------------------------------------------------- one burst, in whichever process


_MODELS: dict = {}  # (weights file, size, mtime, device) -> model, in this process
_ORIGINAL_LOAD_MODEL: list = []  # `weights.load_model` while the cache stands in for it


def _cached_load_model(path, device="cpu"):
    """`weights.load_model`, once per file (and its size and mtime) and device per process."""
    try:
        resolved = Path(path).resolve()
        stat = resolved.stat()
    except OSError:
        return _ORIGINAL_LOAD_MODEL[0](path, device)  # its own one-line error
    key = (str(resolved), stat.st_size, stat.st_mtime_ns, str(device))
    if key not in _MODELS:
        _MODELS[key] = _ORIGINAL_LOAD_MODEL[0](path, device)
    return _MODELS[key]


@contextlib.contextmanager
def model_cache():
    """Within the block, `weights.load_model` (which `pipeline.denoise_burst` calls for every burst)
    loads each weights file once; the models are kept until the outermost block ends (a worker process
    keeps them for its life: `_init_worker`)."""
    from burstkpn import weights

    if weights.load_model is _cached_load_model:  # already on (a worker process, or nested)
        yield
        return
    _ORIGINAL_LOAD_MODEL[:] = [weights.load_model]
    weights.load_model = _cached_load_model
    try:
        yield
    finally:
        weights.load_model = _ORIGINAL_LOAD_MODEL[0]
        _MODELS.clear()  # a library caller's process keeps no models after the batch


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def denoise_one(folder: str, out_dir: str, options: dict, before: bool = False, report: bool = False) -> dict:
    """Denoise one burst into ``out_dir`` and say how it went (never raises for a bad burst):
    {"burst", "status": "done" | "failed", "outputs", "seconds", "error", "warnings"}."""
    from burstkpn.io.outputs import write_denoised
    from burstkpn.pipeline import denoise_burst

    start = time.perf_counter()
    entry: dict = {"burst": folder}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)  # every burst's own warnings, not once per process
        try:
            with model_cache():
                result = denoise_burst(folder, **options)
                written = write_denoised(result, os.path.join(out_dir, ""), before=before, report=report)
            entry.update(status="done", outputs=[str(p) for p in written] + [str(written[0].with_suffix(".json"))])
        except BurstKPNError as exc:
            entry.update(status="failed", error=_one_line(exc))
        except MemoryError:
            entry.update(status="failed", error="out of memory (try smaller tiles: --memory-gb or --tile)")
        except Exception as exc:  # noqa: BLE001 - a bug, but one burst's: recorded, and the rest go on
            entry.update(status="failed", error=_one_line(f"unexpected {type(exc).__name__}: {exc}"))
    entry["seconds"] = round(time.perf_counter() - start, 3)
    entry["warnings"] = [(w.category, _one_line(w.message)) for w in caught]
    return entry


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    from burstkpn import weights

    _ORIGINAL_LOAD_MODEL[:] = [weights.load_model]
    weights.load_model = _cached_load_model  # for the life of this worker process


# ---------------------------------------------------------------- the batch


def default_threads(workers: int) -> int:
    """Torch threads per process: this machine's cores over the processes sharing it (the workers of each of
    torchrun's local ranks)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, cores // (max(local, 1) * workers))


def denoise_bursts(bursts: Iterable[str | Path], out_dir: str | Path, *, workers: int = 1, rank: int | None = None,
                   world: int | None = None, threads: int | None = None, before: bool = False, report: bool = False,
                   progress: bool = False, log: Callable[[str], None] | None = None, **denoise_options) -> dict:
    """Denoise many bursts into ``out_dir`` (see the module docstring) and return the summary, also written
    to ``out_dir/summary.json`` (``summary-rank{R}.json`` when ``world`` > 1).

    bursts: burst folders (`find_bursts`, `read_burst_list`); sorted, so that every rank sees one order.
    workers: processes on this machine. rank / world: this process's share (default: torchrun's ``RANK`` /
    ``WORLD_SIZE``, else 0 / 1). threads: torch threads per process (default: cores / processes).
    before, report: as `write_denoised`. progress: a tqdm bar over the bursts (rank 0 only). log: receives
    one-line notes (e.g. ``print``): failures, as they happen. denoise_options: `pipeline.denoise_burst`'s
    (noise, model, align, reference, tile, memory_gb, raw_mode, gamma_16bit, ensemble, bf16).

    The summary: {"out_dir", "rank", "world", "workers", "total", "bursts", "done": [{"burst", "outputs",
    "seconds"}], "skipped": [{"burst", "outputs"}], "failed": [{"burst", "error"}], "warnings": [{"burst",
    "warning"}], "counts", "seconds", "summary"}.
    """
    from burstkpn.io.images import atomic_output, make_folder

    start = time.perf_counter()
    say = log or (lambda text: None)
    env_rank, env_world = torchrun_rank()
    rank = env_rank if rank is None else rank
    world = env_world if world is None else world
    if world < 1 or not 0 <= rank < world:
        raise BurstKPNError(f"rank must be in [0, world) with world >= 1, got rank {rank} of {world}")
    if workers < 1 or (threads is not None and threads < 1):
        raise BurstKPNError(f"workers and threads must be at least 1, got {workers}, {threads}")
    options = _check_options(denoise_options)
    out_dir = Path(out_dir)
    bursts = _unique_sorted(bursts, out_dir, say)
    names = {b: output_name(b) for b in bursts}
    _check_names(names)
    make_folder(out_dir)

    mine = share(bursts, rank, world)
    summary_name = "summary.json" if world == 1 else f"summary-rank{rank}.json"
    remove_stale_temps(out_dir, [names[b] for b in mine] + [Path(summary_name).stem])
    done, skipped, failed, warned = [], [], [], []
    todo = []
    for burst in mine:
        outputs = finished(out_dir, names[burst])
        if outputs is None:
            todo.append(burst)
        else:
            skipped.append({"burst": str(burst), "outputs": [str(p) for p in outputs]})
    def record(entry: dict) -> None:
        for category, text in entry.pop("warnings", []):
            warned.append({"burst": entry["burst"], "warning": text})
            warnings.warn(f"{entry['burst']}: {text}", category, stacklevel=3)
        if entry["status"] == "done":
            done.append({"burst": entry["burst"], "outputs": entry["outputs"], "seconds": entry["seconds"]})
        else:
            failed.append({"burst": entry["burst"], "error": entry["error"]})
            say(f"failed: {entry['burst']}: {entry['error']}")

    jobs = [(str(b), str(out_dir), options, before, report) for b in todo]
    with model_cache():  # this process's models: the check below and the bursts done in this process
        if todo and options.get("model"):
            # a missing or broken weights file: one error now, not one per burst
            from burstkpn.weights import resolve_model

            resolve_model(options["model"])
        with _bar(len(mine), len(skipped), progress and rank == 0, f"rank {rank}/{world}" if world > 1 else "bursts") as bar:
            def note(entry: dict) -> None:
                speaks = entry["status"] != "done" or entry.get("warnings")
                with bar.external_write_mode() if speaks and not bar.disable else contextlib.nullcontext():
                    record(entry)
                bar.update(1)

            if workers == 1 or len(todo) <= 1:
                # torch's threads as they are, unless told, or shared with torchrun's other local ranks
                local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
                with _threads(threads or (default_threads(1) if local_ranks > 1 else None)):
                    for job in jobs:
                        note(denoise_one(*job))
            else:
                _run_pool(jobs, min(workers, len(todo)), threads or default_threads(workers), note)

    summary = {
        "out_dir": str(out_dir), "rank": rank, "world": world, "workers": workers, "total": len(bursts), "bursts": len(mine),
        "counts": {"done": len(done), "skipped": len(skipped), "failed": len(failed)},
        "done": sorted(done, key=lambda e: e["burst"]), "skipped": skipped,
        "failed": sorted(failed, key=lambda e: e["burst"]), "warnings": warned,
        "seconds": round(time.perf_counter() - start, 2), "summary": str(out_dir / summary_name),
    }
    with atomic_output(out_dir / summary_name) as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def failed_on_all_ranks(failed: int, world: int) -> int:
    """Under torchrun: wait until every rank has finished its bursts, and return the failures of all of them.

    torchrun stops all ranks as soon as one exits non-zero, so a rank whose bursts failed must not exit
    before the others are done. This is the batch's only communication: a gloo process group made here,
    at the end (a long timeout: ranks may finish hours apart), one all-reduce, and gone. Outside torchrun
    (no ``MASTER_ADDR``) or with one rank: ``failed``.
    """
    if world <= 1 or "MASTER_ADDR" not in os.environ:
        return failed
    import datetime

    import torch
    import torch.distributed as dist

    created = not dist.is_initialized()
    if created:
        dist.init_process_group("gloo", timeout=datetime.timedelta(days=30))
    try:
        total = torch.tensor([failed], dtype=torch.int64)
        dist.all_reduce(total)
        return int(total.item())
    finally:
        if created:
            dist.destroy_process_group()


def _check_options(options: dict) -> dict:
    """`denoise_burst`'s options, checked once (not once per burst)."""
    from burstkpn.pipeline import RAW_MODES, as_noise_level

    unknown = sorted(set(options) - set(DENOISE_OPTIONS))
    if unknown:
        raise TypeError(f"denoise_bursts() got unexpected option(s): {', '.join(unknown)}")
    options = dict(options)
    if options.get("noise") is not None:
        options["noise"] = as_noise_level(options["noise"])
    if options.get("raw_mode", "full") not in RAW_MODES:
        raise BurstKPNError(f"raw_mode must be one of {', '.join(RAW_MODES)}, got {options['raw_mode']!r}")
    if options.get("memory_gb", 1.0) <= 0 or (options.get("tile") is not None and options["tile"] < 1):
        raise BurstKPNError(f"memory_gb and tile must be positive, got {options.get('memory_gb')}, {options.get('tile')}")
    return options


def _unique_sorted(bursts: Iterable[str | Path], out_dir: Path, say: Callable[[str], None]) -> list[Path]:
    seen: dict[Path, Path] = {}
    out = out_dir.resolve()
    for burst in map(Path, bursts):
        key = burst.resolve()
        if key == out:
            say(f"note: {burst} is the output folder: not a burst")
            continue
        seen.setdefault(key, burst)
    if not seen:
        raise BurstKPNError("no bursts to denoise")
    return sorted(seen.values(), key=str)


def _check_names(names: dict[Path, str]) -> None:
    """Two bursts must not write one output, nor one the summary file."""
    owner: dict[str, Path] = {}
    for burst, name in names.items():
        if name == "summary" or re.fullmatch(r"summary-rank\d+", name):
            raise BurstKPNError(f"{burst}: a burst named {name!r} would overwrite the summary file {name}.json: rename its folder")
        if name in owner:
            raise BurstKPNError(f"{owner[name]} and {burst} would both write {name}.*: rename one of the folders")
        owner[name] = burst


@contextlib.contextmanager
def _threads(count: int | None):
    """torch's thread count set to ``count`` within the block (None: unchanged)."""
    if count is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _bar(total: int, initial: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, unit="burst", dynamic_ncols=True)


def _run_pool(jobs: list[tuple], workers: int, threads: int, note: Callable[[dict], None]) -> None:
    """Run ``jobs`` (`denoise_one`'s arguments) on ``workers`` spawned processes, at most one queued per worker,
    so that an interruption leaves nothing queued; ``note`` receives each result as it comes."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    pending = list(reversed(jobs))
    running: dict = {}
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                               initargs=(threads,))
    try:
        while pending or running:
            while pending and len(running) < workers:
                job = pending.pop()
                try:
                    running[pool.submit(denoise_one, *job)] = job
                except BrokenProcessPool:
                    note(_died(job))
            finished_now, _ = wait(running, return_when=FIRST_COMPLETED) if running else (set(), None)
            for future in finished_now:
                job = running.pop(future)
                try:
                    note(future.result())
                except BrokenProcessPool:
                    note(_died(job))
    finally:
        pool.shutdown(wait=not (pending or running), cancel_futures=True)


def _died(job: tuple) -> dict:
    return {"burst": job[0], "status": "failed", "seconds": 0.0, "warnings": [],
            "error": "its worker process died (killed, or out of memory?)"}
