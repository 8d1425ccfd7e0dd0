"""``bitscale plugins list [--json]``: every plugin, its version, hooks, registrations and load errors."""

from __future__ import annotations

import argparse
import json

from tabulate import tabulate

from bitscale.harness.plugin_loader import get_plugins


def add_parser(sub) -> None:
    p = sub.add_parser("plugins", help="inspect installed plugins", description=__doc__)
    psub = p.add_subparsers(dest="plugins_command", metavar="ACTION", required=True)
    lst = psub.add_parser("list", help="list plugins and what they registered")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.set_defaults(func=run)


def collect() -> dict:
    ps = get_plugins()
    plugins = []
    for info in ps.plugins.values():
        plugins.append({
            "name": info.name, "dist": info.dist, "version": info.version, "builtin": info.builtin,
            "hooks": info.hooks, "models": ps.models.by_plugin(info.name),
            "quantizers": ps.quantizers.by_plugin(info.name), "losses": ps.losses.by_plugin(info.name),
        })
    errors = [{"name": e.name, "dist": e.dist, "error": e.error} for e in ps.errors]
    return {"plugins": plugins, "errors": errors}


def run(args: argparse.Namespace) -> int:
    data = collect()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    rows = [[p["name"], f"{p['dist']} {p['version']}", ", ".join(p["hooks"]),
             ", ".join(p["models"] + p["quantizers"] + p["losses"])] for p in data["plugins"]]
    print(tabulate(rows, headers=["plugin", "distribution", "hooks", "registered"], tablefmt="simple"))
    for e in data["errors"]:
        print(f"\nFAILED TO LOAD {e['name']} ({e['dist']}): {e['error']}")
    return 0
