"""Options shared by several subcommands."""

from __future__ import annotations

import argparse
import os

from bitscale.harness.store import DEFAULT_URL


def add_store_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        default=os.environ.get("BITSCALE_STORE", DEFAULT_URL),
        metavar="URL",
        help="results store: a SQLAlchemy URL or a SQLite file path "
        "(default: $BITSCALE_STORE or sqlite:///bitscale.db)",
    )


def _whole_number(text: str, least: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse ``type`` of counts (threads, jobs): a whole number, at least 1."""
    return _whole_number(text, 1, "at least 1")


def non_negative_int(text: str) -> int:
    """argparse ``type`` of retry counts: a whole number, 0 or more."""
    return _whole_number(text, 0, "0 or more")


def non_negative_float(text: str) -> float:
    """argparse ``type`` of resource amounts (GPUs per cell): a number, 0 or more (0.5 shares a GPU)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more, got {text}")
    return value
