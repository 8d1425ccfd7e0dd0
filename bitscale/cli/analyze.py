"""``bitscale analyze errors|noise-tolerance|activations``: the paper's Section 3.2 analyses (Fig. 2, 3, 4).

Examples::

    bitscale analyze errors --family var-tiny --size d6 --method rtn --precision W4A8
    bitscale analyze noise-tolerance --family dit-tiny --size d6w128 --samples 16
    bitscale analyze activations --family dit-tiny --size d6w128 --layer fc1 --layer qkv --block 0 --block 5

Results go to ``<folder of the SQLite store>/analyses/<hash>/`` (or ``--analyses DIR``): result.json
with the config, provenance and numbers, and the figures as PNG and SVG. The same analysis of the
same weights is reused unless ``--force``; ``bitscale leaderboard --format html`` shows them. The
model family must expose its generation phases (docs/analysis.md).
"""

from __future__ import annotations

import argparse
import json

from bitscale.cli.common import add_store_option, positive_int

DEFAULT_SNRS = "40,35,30,27.5,25,22.5,20,17.5,15,12.5,10,7.5,5,2.5,0"


def _snrs(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers (dB), got {text!r}") from None


def _option(text: str) -> tuple[str, object]:
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _common(p: argparse.ArgumentParser, quantized: str) -> None:
    p.add_argument("--family", required=True, help="model family (e.g. var-tiny, dit-tiny, llamagen-tiny)")
    p.add_argument("--size", help="model size (default: the family's largest)")
    p.add_argument(
        "--model-option",
        action="append",
        type=_option,
        default=[],
        metavar="KEY=VALUE",
        help="family option, e.g. sampling_steps=10 (repeatable)",
    )
    p.add_argument("--method", help=f"quantizer{quantized}")
    p.add_argument("--precision", help="precision of the quantized model, e.g. W4A8")
    p.add_argument("--quantizer-option", action="append", type=_option, default=[], metavar="KEY=VALUE")
    p.add_argument("--calibration-batches", type=positive_int, default=8)
    p.add_argument("--samples", type=positive_int, default=16, help="samples (labels cycle over classes; default 16)")
    p.add_argument("--seed", type=int, default=0)
    add_store_option(p)
    p.add_argument("--analyses", metavar="DIR", help="folder of the analyses (default: analyses/ beside the store)")
    p.add_argument("--force", action="store_true", help="compute again even if this analysis is stored")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "analyze",
        help="dissect generation: errors per phase, noise tolerance, activations",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kinds = p.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)
    e = kinds.add_parser("errors", help="Fig. 2: quantized vs FP error after extraction and reconstruction")
    _common(e, " (required with --precision)")
    n = kinds.add_parser("noise-tolerance", help="Fig. 3a/3b: loss vs SNR of injected noise; accumulation")
    _common(n, " (optional: analyse the quantized model instead of FP)")
    n.add_argument(
        "--snr",
        type=_snrs,
        default=_snrs(DEFAULT_SNRS),
        metavar="DB,DB,...",
        help=f"SNRs of the sweep in dB (default {DEFAULT_SNRS})",
    )
    n.add_argument("--step", type=int, help="step that gets the noise (default: the middle step)")
    n.add_argument("--accumulation-snr", type=float, default=20.0, help="SNR (dB) of Fig. 3b's noise (default 20)")
    n.add_argument("--fraction", type=float, default=0.1, help="leading fraction of steps with noise (default 0.1)")
    a = kinds.add_parser("activations", help="Fig. 4/11-16: fc1/qkv/fc2 input activations over steps")
    _common(a, " (optional: look at the quantized model's activations)")
    a.add_argument("--layer", action="append", metavar="KIND", help="fc1, qkv, fc2 (repeatable; default all three)")
    a.add_argument(
        "--block",
        action="append",
        type=int,
        metavar="N",
        help="block index from 0 (repeatable; default first, middle, last)",
    )
    for q in (e, n, a):
        q.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bitscale.analysis import run as analyses
    from bitscale.analysis.models import ModelSpec
    from bitscale.analysis.store import analyses_root
    from bitscale.harness.plugin_loader import get_plugins

    family = get_plugins().models.get(args.family)
    precision = args.precision or "W16A16"
    spec = ModelSpec(
        args.family,
        args.size or family.sizes[-1],
        dict(args.model_option),
        args.method,
        precision,
        dict(args.quantizer_option),
        args.calibration_batches,
        args.seed,
    )
    root = analyses_root(args.store, args.analyses)
    if args.analysis == "errors":
        stored, reused = analyses.run_errors(spec, args.samples, root, args.force)
    elif args.analysis == "noise-tolerance":
        stored, reused = analyses.run_noise(
            spec, args.samples, args.snr, args.step, args.accumulation_snr, args.fraction, root, args.force
        )
    else:
        stored, reused = analyses.run_activations(
            spec, args.samples, args.layer or ["fc1", "qkv", "fc2"], args.block, root, args.force
        )
    from bitscale.analysis.summary import summary_lines

    for line in summary_lines(stored.result):
        print(line)
    print(f"{'reused' if reused else 'wrote'} {stored.path}")
    return 0
