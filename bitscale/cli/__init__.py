"""The ``bitscale`` command: one module per subcommand, each with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import sys

from bitscale.cli import analyze, baseline, check, leaderboard, paper, plan_power, plot, plugins, rescore, run, zoo
from bitscale.harness.errors import BitscaleError

COMMANDS = (run, rescore, leaderboard, plot, paper, baseline, check, plan_power, plugins, zoo, analyze)


def build_parser() -> argparse.ArgumentParser:
    import bitscale

    parser = argparse.ArgumentParser(
        prog="bitscale",
        description="Benchmark quantized vision generative models under fixed bit budgets.",
    )
    parser.add_argument("--version", action="version", version=f"bitscale {bitscale.__version__}")
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
        print("\nbitscale: interrupted; finished cells are saved, run the same command again to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
