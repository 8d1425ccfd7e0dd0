"""Options shared by several subcommands."""

from __future__ import annotations

import argparse
import os

from bitscale.harness.store.result_store import DEFAULT_URL


def add_store_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", default=os.environ.get("BITSCALE_STORE", DEFAULT_URL), metavar="URL",
                   help="results store: a SQLAlchemy URL or a SQLite file path "
                        "(default: $BITSCALE_STORE or sqlite:///bitscale.db)")


def positive_int(text: str) -> int:
    """argparse ``type`` of counts (threads, jobs): a whole number, at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
