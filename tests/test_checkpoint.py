"""Checkpoint reading and strict loading: good files load, bad ones raise errors that name the file and keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from bitscale.harness.errors import BitscaleError
from bitscale.plugins.models.checkpoint import load_state_dict_file, load_strict


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    net.register_buffer("steps", torch.zeros(2, dtype=torch.int64))
    return net


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_safetensors_roundtrip(tmp_path: Path) -> None:
    sd = _net().state_dict()
    save_file(sd, str(tmp_path / "w.safetensors"))
    loaded = load_state_dict_file(tmp_path / "w.safetensors")
    assert _same(loaded, sd)
    fresh = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    fresh.register_buffer("steps", torch.ones(2, dtype=torch.int64))
    load_strict(fresh, loaded, "w.safetensors")
    assert _same(fresh.state_dict(), sd)


@pytest.mark.parametrize("wrap", ["model", "module", "state_dict", "ema"])
def test_pth_nested_unwrap(tmp_path: Path, wrap: str) -> None:
    sd = _net().state_dict()
    torch.save({wrap: sd, "epoch": 3, "args": {"lr": 0.1}}, tmp_path / "w.pth")
    assert _same(load_state_dict_file(tmp_path / "w.pth"), sd)


def test_nested_key_order_and_ddp_prefix(tmp_path: Path) -> None:
    sd = _net().state_dict()
    other = {k: v + 1 for k, v in sd.items()}
    # DiT/LlamaGen-style files hold both: the EMA weights win, as in the official find_model.
    torch.save({"model": {"module." + k: v for k, v in other.items()}, "ema": sd}, tmp_path / "w.pt")
    assert _same(load_state_dict_file(tmp_path / "w.pt"), sd)
    assert _same(load_state_dict_file(tmp_path / "w.pt", nested_keys=("model", "ema")), other)  # prefix stripped
    raw = load_state_dict_file(tmp_path / "w.pt", nested_keys=("model",), strip_prefix=None)
    assert all(k.startswith("module.") for k in raw)


def test_raw_state_dict_and_no_unwrap(tmp_path: Path) -> None:
    sd = _net().state_dict()
    torch.save(sd, tmp_path / "raw.pth")
    assert _same(load_state_dict_file(tmp_path / "raw.pth", nested_keys=()), sd)
    torch.save({"model": sd}, tmp_path / "n.pth")
    with pytest.raises(BitscaleError, match=r"n\.pth.*not tensors"):
        load_state_dict_file(tmp_path / "n.pth", nested_keys=())


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BitscaleError, match=r"not found: .*nope\.pth"):
        load_state_dict_file(tmp_path / "nope.pth")


@pytest.mark.parametrize("name", ["w.pth", "w.safetensors"])
def test_truncated_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    sd = _net().state_dict()
    if name.endswith(".safetensors"):
        save_file(sd, str(path))
    else:
        torch.save(sd, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BitscaleError, match=rf"cannot read checkpoint .*{name}.*truncated"):
        load_state_dict_file(path)


def test_garbage_and_unsafe_pickle(tmp_path: Path) -> None:
    (tmp_path / "g.pt").write_bytes(b"this is not a checkpoint")
    with pytest.raises(BitscaleError, match=r"g\.pt"):
        load_state_dict_file(tmp_path / "g.pt")
    # weights_only=True refuses arbitrary objects: the error still names the file.
    torch.save({"model": _net()}, tmp_path / "obj.pt")
    with pytest.raises(BitscaleError, match=r"obj\.pt"):
        load_state_dict_file(tmp_path / "obj.pt")


def test_strict_names_keys_and_shapes() -> None:
    net = _net()
    sd = dict(net.state_dict())
    sd.pop("0.bias")
    sd["extra.weight"] = torch.zeros(1)
    sd["2.weight"] = torch.zeros(5, 8)
    with pytest.raises(BitscaleError) as err:
        load_strict(_net(), sd, "/ckpt/var_d16.pth")
    msg = str(err.value)
    assert "/ckpt/var_d16.pth" in msg
    assert "1 missing: 0.bias" in msg
    assert "1 unexpected: extra.weight" in msg
    assert "2.weight: checkpoint (5, 8) vs model (3, 8)" in msg


def test_strict_lists_only_first_few() -> None:
    net = nn.Sequential(*[nn.Linear(2, 2) for _ in range(10)])
    with pytest.raises(BitscaleError, match=r"20 missing: .*\(\+15 more\)"):
        load_strict(net, {}, "empty.safetensors")


def test_strict_assign_fills_meta_module() -> None:
    sd = _net().state_dict()
    with torch.device("meta"):
        meta = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    meta.register_buffer("steps", torch.zeros(2, dtype=torch.int64, device="meta"))
    load_strict(meta, sd, "mem", assign=True)
    assert _same(meta.state_dict(), sd)


class _RunsCode:
    """A pickle that runs code when loaded: must be refused, never executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_official_training_checkpoint_with_args_loads_its_ema_weights(tmp_path: Path) -> None:
    # As the official DiT/LlamaGen training scripts save it: weights, EMA weights, optimizer
    # state and the command line as an argparse.Namespace.
    import argparse

    sd = _net().state_dict()
    other = {k: v + 1 for k, v in sd.items()}
    args = argparse.Namespace(model="DiT-XL/2", lr=1e-4, global_batch_size=256, ema=True, results_dir=None)
    torch.save(
        {"model": other, "ema": sd, "opt": {"state": {}, "param_groups": [{"lr": 1e-4}]}, "args": args},
        tmp_path / "0400000.pt",
    )
    assert _same(load_state_dict_file(tmp_path / "0400000.pt"), sd)


def test_objects_that_run_code_are_still_refused(tmp_path: Path) -> None:
    import argparse

    marker = tmp_path / "pwned"
    torch.save(
        {"model": _net().state_dict(), "args": argparse.Namespace(lr=1.0), "evil": _RunsCode(marker)},
        tmp_path / "evil.pt",
    )
    with pytest.raises(BitscaleError, match=r"evil\.pt.*weights-only loading refuses"):
        load_state_dict_file(tmp_path / "evil.pt")
    assert not marker.exists()
