"""`adu-depth <subcommand>`: the top floor. Each subcommand lives in `adu_depth_core/commands/<name>.py`
with `HELP`, `add_arguments(parser)` and `run(args) -> int`; it is imported only when used, so
`adu-depth --help` stays fast and a missing optional dependency breaks only its own command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS = {
    "synth": "Render the synthetic stereo rig into KITTI / DrivingStereo / rosbag2 files",
    "train": "Train the stereo teacher or distil the monocular student from a recipe",
    "ablate": "Train the rows of the paper's Table 4 with equal budgets and print the table",
    "eval": "Evaluate a checkpoint / ONNX / engine on KITTI, DrivingStereo, synthetic or rosbag data",
    "export": "Export the student to ONNX (checked in ONNX Runtime) and optionally a TensorRT engine",
    "predict": "Run the student on image files: depth and uncertainty PNG/NPY",
    "import-newcrfs": "Convert a NeWCRFs checkpoint (KITTI / NYU release) into a student checkpoint",
    "bench": "Latency / FPS / memory of a model on a backend",
    "bag-eval": "Evaluate a model on a rosbag2 recording and write an output bag with depth topics",
    "demo": "End-to-end demo on the synthetic stereo rig: data, teacher, student, eval, export, bag",
}


def _module(name: str):
    return importlib.import_module(f"adu_depth_core.commands.{name.replace('-', '_')}")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adu-depth",
        description="ADU-Depth: monocular metric depth + uncertainty distilled from a stereo teacher",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = next((a for a in argv if a in COMMANDS), None)
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:  # only the chosen command's module is imported
            _module(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return int(_module(args.command).run(args) or 0)
    except (ValueError, OSError, RuntimeError) as exc:
        # Errors a user can cause (bad input, a full disk, no permission) end in one clear line naming
        # the thing, not a traceback (use -v for the trace).
        if args.verbose:
            raise
        from adu_depth_core.paths import os_error_line

        line = os_error_line(exc) if isinstance(exc, OSError) else str(exc)
        print(f"adu-depth {args.command}: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"adu-depth {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
