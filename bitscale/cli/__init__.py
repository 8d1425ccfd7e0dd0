"""The ``bitscale`` command: one module per subcommand, each with ``add_parser`` and ``run``.

Building the parser imports no heavy library (torch, SQLAlchemy, pandas, pydantic): each command
imports what it needs when it runs, so ``bitscale --help`` starts in a blink (tests/test_startup.py).
"""

from __future__ import annotations

import argparse
import sys

from bitscale.cli import (
    analyze,
    baseline,
    check,
    leaderboard,
    paper,
    plan_power,
    plot,
    plugins,
    rescore,
    run,
    store,
    zoo,
)
from bitscale.harness.errors import BitscaleError

COMMANDS = (run, rescore, leaderboard, plot, paper, baseline, check, plan_power, plugins, store, zoo, analyze)


class _Version(argparse.Action):
    """``--version``: reads the installed version only when asked (importlib.metadata is slow to import)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        import bitscale

        parser.exit(message=f"bitscale {bitscale.__version__}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bitscale",
        description="Benchmark quantized vision generative models under fixed bit budgets.",
    )
    parser.add_argument("--version", action=_Version, help="show the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BitscaleError as exc:
        print(f"bitscale: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(
            "\nbitscale: interrupted; finished cells are saved, run the same command again to resume", file=sys.stderr
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
