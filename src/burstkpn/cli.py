"""The ``burstkpn`` command: argparse subcommands, one module each under `burstkpn.commands`.

Every command module has ``add_arguments(parser)`` and ``run(args) -> int`` and is imported only
when used, so a broken optional dependency cannot break unrelated commands. A `BurstKPNError`
becomes one line on stderr and exit status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from burstkpn import __version__
from burstkpn.errors import BurstKPNError

COMMANDS = {
    "synth": "build a seeded, versioned evaluation test set of synthetic bursts",
    "demo": "synthesise a burst from a bundled photo and show what each method recovers",
    "denoise": "denoise a real burst (image folder, 16-bit TIFF/PNG, camera raw/DNG) with a trained model",
    "evaluate": "run classical and learned methods on a test set; write the paper's Table 1 with plots",
    "export": "export a trained model (network + kernel application) to ONNX, checked against PyTorch",
    "inspect": "show a KPN's kernels, per-frame contributions and noise map on one burst, with an HTML report",
    "train": "train a kernel prediction network on synthetic bursts from photo folders",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="burstkpn", description="Burst denoising with kernel prediction networks.")
    parser.add_argument("--version", action="version", version=f"burstkpn {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, summary in COMMANDS.items():
        sub.add_parser(name, help=summary, description=summary, add_help=False)
    return parser


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings (e.g. an unreliable noise estimate) as one ``burstkpn: warning:`` line, not Python's two."""
    print("burstkpn: warning: " + " ".join(str(message).splitlines()), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    warnings.showwarning = _warning_line
    parser = build_parser()
    # Parse the command name first, then let only that command's module define its arguments.
    top, rest = parser.parse_known_args(argv)
    if top.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(f"burstkpn.commands.{top.command}")
    cmd_parser = argparse.ArgumentParser(prog=f"burstkpn {top.command}", description=COMMANDS[top.command])
    module.add_arguments(cmd_parser)
    cmd_parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    args = cmd_parser.parse_args(rest)
    args.debug = top.debug or getattr(args, "debug", False)
    try:
        return int(module.run(args) or 0)
    except BurstKPNError as exc:
        if args.debug:
            raise
        print("burstkpn: error: " + " ".join(str(exc).splitlines()), file=sys.stderr)  # always one line
        return 2
    except KeyboardInterrupt:
        print("burstkpn: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        if args.debug:
            raise
        print("burstkpn: error: out of memory (try smaller tiles or a smaller input)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
