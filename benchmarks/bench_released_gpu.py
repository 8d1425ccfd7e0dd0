"""The released families' GPU path at full size: build, quantize, sample — timed against full precision.

    python benchmarks/bench_released_gpu.py [--batch 8] [--dit-steps 250] [--json OUT.json]

No released checkpoint can be downloaded where bitscale's machines run, so the script writes
randomly initialised weights in the *official* file layout (``var_d16.pth`` +
``vae_ch160v4096z32.pth``, ``c2i_B_256.pt`` + ``vq_ds16_c2i.pt``, ``DiT-XL-2-256x256.pt`` + an
``sd-vae-ft-ema`` weights file) into a temporary folder and loads them through the families'
real loading code (strict key check, ``weights_only`` loads). Cost does not depend on weight
values, so build/quantize/sampling times and memory are those of the released models; image
quality is meaningless and not measured.

Per family it reports the model's build time, and for full precision and each quantizer x
precision: quantization time, sampling throughput (images/s with the official sampler) and its
ratio to full precision in the same run, and the peak GPU memory. GPTQ's calibration on
VAR/LlamaGen reads an ImageFolder; the script writes one of random images (the real image path).
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tabulate import tabulate

FAMILIES = {"var": "d16", "llamagen": "gpt-b", "dit": "xl-2"}
SETTINGS = [("rtn", "W8A8"), ("rtn", "W4A16"), ("gptq", "W4A16")]


def _write_checkpoints(folder: Path) -> dict[str, dict]:
    """Random-init official-layout files per family; returns each family's options."""
    from safetensors.torch import save_file

    from bitscale.plugins.models.dit.dit import DiT
    from bitscale.plugins.models.dit.released import dit_config
    from bitscale.plugins.models.dit.vae import SD_VAE_CONFIG, build_vae
    from bitscale.plugins.models.llamagen.gpt import GPT
    from bitscale.plugins.models.llamagen.released import VQ_CONFIG, gpt_config
    from bitscale.plugins.models.llamagen.vq import VQModel
    from bitscale.plugins.models.var.transformer import VAR, official_var_config
    from bitscale.plugins.models.var.vqvae import VQVAE, VQVAEConfig

    images = folder / "calib"
    options = {
        "var": {
            "checkpoint": str(folder / "var_d16.pth"),
            "vae_checkpoint": str(folder / "vae_ch160v4096z32.pth"),
            "calibration_dir": str(images),
        },
        "llamagen": {
            "checkpoint": str(folder / "c2i_B_256.pt"),
            "vq_checkpoint": str(folder / "vq_ds16_c2i.pt"),
            "image_size": 256,
        },
        "dit": {
            "checkpoint": str(folder / "DiT-XL-2-256x256.pt"),
            "vae_path": str(folder / "sd-vae-ft-ema.safetensors"),
        },
    }
    if (folder / "done").exists():
        return options
    torch.manual_seed(0)
    torch.save({"model": VAR(official_var_config(16)).state_dict()}, folder / "var_d16.pth")
    torch.save(VQVAE(VQVAEConfig()).state_dict(), folder / "vae_ch160v4096z32.pth")
    gpt = GPT(gpt_config("gpt-b", 256)).state_dict()
    torch.save(
        {"model": {k: v for k, v in gpt.items() if not k.endswith(("freqs_cis", "causal_mask"))}},
        folder / "c2i_B_256.pt",
    )
    torch.save({"model": VQModel(VQ_CONFIG).state_dict()}, folder / "vq_ds16_c2i.pt")
    dit = DiT(dit_config("xl-2", 256)).state_dict()
    torch.save(dit, folder / "DiT-XL-2-256x256.pt")
    save_file(
        {k: v.contiguous() for k, v in build_vae(SD_VAE_CONFIG).state_dict().items()},
        str(folder / "sd-vae-ft-ema.safetensors"),
    )
    rng = np.random.default_rng(0)
    from PIL import Image

    for c in range(2):
        (images / f"n{c:08d}").mkdir(parents=True, exist_ok=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(images / f"n{c:08d}" / f"{i}.png")
    (folder / "done").touch()
    return options


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _sample_rate(model, batch: int, seed: int, repeats: int = 3) -> tuple[float, torch.Tensor]:
    """Median images/s over ``repeats`` draws of the same batch, and the images."""
    labels = torch.arange(batch) % 1000
    rates = []
    for _ in range(repeats):
        gen = torch.Generator().manual_seed(seed)
        _sync()
        t = time.perf_counter()
        with torch.no_grad():
            images = model.sample(labels, gen)
        _sync()
        rates.append(batch / (time.perf_counter() - t))
    return float(np.median(rates)), images.float().cpu()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--dit-steps", type=int, default=250)
    ap.add_argument("--calibration-batches", type=int, default=4)
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--checkpoints",
        type=Path,
        help="folder to write the random checkpoints into and reuse (default: a temporary one)",
    )
    args = ap.parse_args()

    from bitscale.harness.plugin_loader import get_plugins
    from bitscale.precision import Precision

    plugins = get_plugins()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    rows, out = [], {"device": name, "torch": torch.__version__, "batch": args.batch, "results": []}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        folder = args.checkpoints or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        options = _write_checkpoints(folder)
        print(f"wrote random official-layout checkpoints in {time.perf_counter() - t:.1f} s", flush=True)
        for fam_name in args.families.split(","):
            family = plugins.models.get(fam_name)
            opts = dict(options[fam_name])
            if fam_name == "dit":
                opts["sampling_steps"] = args.dit_steps
            opts = family.Options.model_validate(opts)
            size = FAMILIES[fam_name]
            torch.cuda.empty_cache() if device.type == "cuda" else None
            t = time.perf_counter()
            base = family.build(size, opts, device)
            _sync()
            build_s = time.perf_counter() - t
            _sample_rate(base, 2, 1, repeats=1)  # warm-up: kernels, caches
            fp_rate, fp_images = _sample_rate(base, args.batch, 0)
            record = {
                "family": fam_name,
                "size": size,
                "params": base.num_params(),
                "build_s": build_s,
                "sampler": dict(base.sampler),
                "settings": [],
            }
            rows.append(
                [
                    fam_name,
                    size,
                    "W16A16",
                    "-",
                    f"{build_s:.1f}",
                    "-",
                    f"{fp_rate:.2f}",
                    "1.00",
                    "-",
                    f"{torch.cuda.max_memory_allocated() / 2**30:.1f}" if device.type == "cuda" else "-",
                ]
            )
            print(" | ".join(rows[-1]), flush=True)
            for method, prec in SETTINGS:
                model = copy.deepcopy(base)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                q_cls = plugins.quantizers.get(method)
                quantizer = q_cls(q_cls.Options())
                gen = torch.Generator().manual_seed(0)
                t = time.perf_counter()
                calib = model.calibration_batches(args.calibration_batches, gen)
                quantizer.quantize(model, Precision.parse(prec), calib, loss=None, generator=gen)
                _sync()
                q_s = time.perf_counter() - t
                rate, images = _sample_rate(model, args.batch, 0)
                diff = float((images - fp_images).abs().mean())
                mem = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
                record["settings"].append(
                    {
                        "method": method,
                        "precision": prec,
                        "quantize_s": q_s,
                        "images_per_s": rate,
                        "ratio_to_fp": rate / fp_rate,
                        "mean_abs_pixel_diff": diff,
                        "peak_gib": mem,
                    }
                )
                rows.append(
                    [
                        fam_name,
                        size,
                        prec,
                        method,
                        "-",
                        f"{q_s:.1f}",
                        f"{rate:.2f}",
                        f"{rate / fp_rate:.2f}",
                        f"{diff:.1f}",
                        f"{mem:.1f}",
                    ]
                )
                print(" | ".join(rows[-1]), flush=True)  # a partial run (time limit) still leaves its rows
                del model
            record["fp_images_per_s"] = fp_rate
            out["results"].append(record)
            del base
        print(
            tabulate(
                rows,
                headers=[
                    "family",
                    "size",
                    "precision",
                    "method",
                    "build s",
                    "quantize s",
                    "images/s",
                    "x FP",
                    "|Δpixel|",
                    "peak GiB",
                ],
                tablefmt="github",
            ),
            flush=True,
        )
    print(f"\n{name}, torch {torch.__version__}, batch {args.batch}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
