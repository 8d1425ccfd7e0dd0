"""``bitscale plugins list [--json]``: every plugin, its version, hooks, registrations and load errors,
then each quantizer's declared precisions (number-format kinds and widths for weights and activations)."""

from __future__ import annotations

import argparse
import json


def add_parser(sub) -> None:
    p = sub.add_parser("plugins", help="inspect installed plugins", description=__doc__)
    psub = p.add_subparsers(dest="plugins_command", metavar="ACTION", required=True)
    lst = psub.add_parser("list", help="list plugins and what they registered")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.set_defaults(func=run)


def collect() -> dict:
    """The plugins' metadata (read from the metadata cache when this installation's is there)."""
    from bitscale.harness.plugin_metadata import plugin_metadata

    return plugin_metadata()[0]


def _side(kinds: list[str], bits: list[int] | None, needed: bool) -> str:
    if not kinds:
        return "16 only"
    text = "/".join(kinds) + (" " + ",".join(map(str, bits)) if bits is not None else " any width")
    return text if needed else text + " or 16"


def run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    data = collect()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    rows = [
        [
            p["name"],
            f"{p['dist']} {p['version']}",
            ", ".join(p["hooks"]),
            ", ".join(p["models"] + p["quantizers"] + p["losses"]),
        ]
        for p in data["plugins"]
    ]
    print(tabulate(rows, headers=["plugin", "distribution", "hooks", "registered"], tablefmt="simple"))
    rows = [
        [
            q["name"],
            q["plugin"],
            _side(q["weight_kinds"], q["weight_bits"], q["needs_weight_quant"]),
            _side(q["activation_kinds"], q["activation_bits"], q["needs_activation_quant"]),
            "yes" if q["trains"] else "",
        ]
        for q in data["quantizers"]
    ]
    print()
    print(tabulate(rows, headers=["quantizer", "plugin", "weights", "activations", "trains"], tablefmt="simple"))
    for e in data["errors"]:
        print(f"\nFAILED TO LOAD {e['name']} ({e['dist']}): {e['error']}")
    return 0
