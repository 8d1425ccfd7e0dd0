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
    from bitscale.harness.plugin_loader import get_plugins

    ps = get_plugins()
    plugins = []
    for info in ps.plugins.values():
        plugins.append(
            {
                "name": info.name,
                "dist": info.dist,
                "version": info.version,
                "builtin": info.builtin,
                "hooks": info.hooks,
                "models": ps.models.by_plugin(info.name),
                "quantizers": ps.quantizers.by_plugin(info.name),
                "losses": ps.losses.by_plugin(info.name),
            }
        )
    errors = [{"name": e.name, "dist": e.dist, "error": e.error} for e in ps.errors]
    quantizers = [{"name": e.name, "plugin": e.plugin, **declared_precisions(e.obj)} for e in ps.quantizers]
    return {"plugins": plugins, "quantizers": quantizers, "errors": errors}


def declared_precisions(cls) -> dict:
    """What a quantizer class declares it can run, as plain data (``Quantizer``'s class attributes)."""

    def widths(bits) -> list[int] | None:
        return sorted(bits) if bits is not None else None

    return {
        "weight_kinds": sorted(cls.weight_kinds),
        "weight_bits": widths(cls.weight_bits),
        "activation_kinds": sorted(cls.activation_kinds),
        "activation_bits": widths(cls.activation_bits),
        "needs_weight_quant": cls.needs_weight_quant,
        "needs_activation_quant": cls.needs_activation_quant,
        "trains": cls.trains,
    }


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
