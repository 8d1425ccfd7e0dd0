"""Sample shards, kept samples and rescoring, on the local executor (no Ray needed)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bitscale.cli import main
from bitscale.harness.config import parse_experiment
from bitscale.harness.errors import BitscaleError
from bitscale.harness.planner import plan_grid
from bitscale.harness.plugin_loader import get_plugins
from bitscale.harness.rescore import rescore_runs
from bitscale.harness.runner import run_plan
from bitscale.harness.samples import read_samples
from bitscale.harness.sampling import chunk_seed, sample_chunks, shard_chunks
from bitscale.testing.toy import ToyFamily, ToyModel


def test_shard_ranges_cover_every_chunk_once():
    for total in (1, 2, 7, 10):
        for shards in (1, 2, 3, 16):
            ranges = shard_chunks(total, shards)
            assert [k for r in ranges for k in r] == list(range(total))
            assert len(ranges) == min(shards, total) and all(len(r) for r in ranges)


def test_one_and_three_shards_draw_byte_identical_images():
    model = ToyModel(depth=1)
    n, bs, seed = 50, 8, 3  # 7 chunks, the last one short
    whole, labels = sample_chunks(model, n, bs, seed, range(7))
    parts = [sample_chunks(model, n, bs, seed, r) for r in shard_chunks(7, 3)]
    assert torch.equal(torch.cat([p[0] for p in parts]), whole)
    assert torch.equal(torch.cat([p[1] for p in parts]), labels)
    assert whole.shape == (50, 3, 16, 16) and labels.tolist() == [i % 10 for i in range(50)]
    # Chunks draw different streams (not one stream restarted), and another seed gives other images.
    assert len({chunk_seed(seed, k) for k in range(7)}) == 7
    assert not torch.equal(sample_chunks(model, n, bs, seed + 1, range(7))[0], whole)


def test_a_one_batch_cell_draws_what_a_single_stream_drew():
    # Chunk 0 keeps the cell seed: a cell that fits one batch samples exactly as before chunking.
    model = ToyModel(depth=1)
    images, _ = sample_chunks(model, 20, 20, 5, range(1))
    model.module.eval()
    with torch.no_grad():
        expected = model.sample(torch.arange(20) % 10, torch.Generator().manual_seed(5))
    assert torch.equal(images, expected)


def _toy_plugin():
    import types

    from bitscale import hookimpl

    mod = types.ModuleType("toy_plugin")
    mod.register_models = hookimpl(lambda register: register(ToyFamily()))
    return mod


def _exp():
    return parse_experiment(
        {
            "name": "keep",
            "models": [{"family": "toy", "sizes": ["d1"]}],
            "quantizers": ["rtn"],
            "precisions": ["W16A16", "W4A16"],
            "seeds": [0],
            "evaluation": {"num_samples": 40, "calibration_batches": 1, "batch_size": 20},
        },
        "keep.yaml",
    )


def test_kept_samples_rescore_to_the_stored_fid_exactly(register_plugin, bitscale_store, tmp_path):
    register_plugin(_toy_plugin())
    keep = tmp_path / "samples"
    plan = plan_grid(_exp(), get_plugins())
    s = run_plan(plan, bitscale_store, get_plugins(), progress=False, keep_samples=keep)
    assert s.ok == 2
    runs = {r.cell_hash: r for r in bitscale_store.runs()}
    files = sorted(keep.glob("*.npz"))
    assert len(files) == 2 and {r.samples for r in runs.values()} == {str(f) for f in files}
    with np.load(files[0]) as data:  # the ADM evaluation suite's layout
        assert data["arr_0"].dtype == np.uint8 and data["arr_0"].shape == (40, 16, 16, 3)
        assert data["arr_1"].tolist() == [i % 10 for i in range(40)]
    results = rescore_runs(bitscale_store)
    assert len(results) == 2
    for r in results:
        stored = {m.name: m.value for m in runs[r.cell_hash].metrics}
        assert r.metrics["fid"] == stored["fid"]  # exactly: same images, same protocol
        assert r.fingerprint == runs[r.cell_hash].protocol_fingerprint


def test_rescore_cli_and_its_errors(register_plugin, bitscale_store, tmp_path, capsys):
    url = bitscale_store.url
    assert main(["rescore", "--store", url]) == 2
    assert "no finished run with kept samples" in capsys.readouterr().err
    register_plugin(_toy_plugin())
    run_plan(
        plan_grid(_exp(), get_plugins()), bitscale_store, get_plugins(), progress=False, keep_samples=tmp_path / "k"
    )
    assert main(["rescore", "--store", url, "--extractor", "no-such-net"]) == 2
    assert "no such feature extractor" in capsys.readouterr().err
    assert main(["rescore", "--store", url]) == 0
    out = capsys.readouterr().out
    assert "toy/d1 W4A16 rtn seed=0" in out and "stored fid" in out
    # A kept file changed after the run is refused, not scored.
    path = bitscale_store.runs()[0].samples
    with np.load(path) as data:
        arrays = {k: data[k].copy() for k in data}
    arrays["arr_0"][0, 0, 0, 0] ^= 1
    np.savez(path, **arrays)
    with pytest.raises(BitscaleError, match="does not match its name"):
        read_samples(path)
    Path(path).write_bytes(b"PK\x03\x04 truncated")  # not a readable zip: one line, no traceback
    with pytest.raises(BitscaleError, match="not a readable .npz"):
        read_samples(path)


def test_rescore_is_a_read_command(tmp_path, capsys):
    missing = tmp_path / "nothing-here.db"
    assert main(["rescore", "--store", str(missing)]) == 2
    assert not missing.exists()  # read commands never create a store


def test_executor_flags_are_checked_before_anything_runs(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["run", "--store", db, "--ray-address", "auto"]) == 2
    assert "--ray-address applies to the Ray executor" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["run", "--store", db, "--keep-samples", str(tmp_path / "file")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert not (tmp_path / "s.db").exists()  # nothing half-written


def test_the_local_run_path_never_imports_ray():
    code = (
        "import sys, bitscale.cli, bitscale.cli.run, bitscale.harness.runner, "
        "bitscale.harness.executors.local, bitscale.harness.cellwork, bitscale.cli.rescore; "
        "from bitscale.cli import build_parser; build_parser(); "
        "assert 'ray' not in sys.modules, 'ray was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_block_spread_scores_disjoint_blocks_of_each_seed(register_plugin, bitscale_store, tmp_path, capsys):
    from bitscale.harness.evaluation.fid import score
    from bitscale.harness.evaluation.references import reference_for
    from bitscale.harness.rescore import block_spread

    register_plugin(_toy_plugin())
    exp = _exp()
    exp = exp.model_copy(update={"seeds": [0, 1], "precisions": ["W16A16"]})
    run_plan(plan_grid(exp, get_plugins()), bitscale_store, get_plugins(), progress=False, keep_samples=tmp_path / "k")
    (spread,) = block_spread(bitscale_store, 20)
    assert spread.label == "toy/d1 W16A16 fp16" and sorted(spread.seeds) == [0, 1]
    assert len(spread.fids) == 4  # 2 seeds x 40 samples / 20
    # Block 0 of seed 0 is scored exactly as its 20 images alone would be.
    run0 = next(r for r in bitscale_store.runs() if r.seed == 0)
    images, _ = read_samples(run0.samples)
    assert spread.fids[0] == score(images[:20], reference_for("digits16"), seed=0)["fid"]
    m = sum(spread.fids) / 4
    sd = (sum((f - m) ** 2 for f in spread.fids) / 3) ** 0.5
    assert spread.relative_sd == pytest.approx(sd / m)
    assert main(["rescore", "--store", bitscale_store.url, "--blocks", "20"]) == 0
    assert "toy/d1 W16A16 fp16" in capsys.readouterr().out
    assert main(["rescore", "--store", bitscale_store.url, "--blocks", "15"]) == 2
    assert "use a multiple of 10" in capsys.readouterr().err
    assert main(["rescore", "--store", bitscale_store.url, "--blocks", "50"]) == 2
    assert "fewer than --blocks 50" in capsys.readouterr().err
