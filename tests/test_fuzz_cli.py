"""Fuzzing the CLI with mutated experiment files and baselines (bounded, seeded; a few seconds).

Promises checked for every input: the exit code is one the command documents (``run``: 0 or 2
when only planning; ``check``: 0, 1 or 2), bad input is ONE line on stderr and never a
traceback (an exception escaping ``main`` fails the test with its traceback), and the store is
byte-for-byte unchanged after exit 2 (and after any ``check``, a read-only command).
"""

import contextlib
import copy
import hashlib
import json
import random
import sqlite3
import types

import pytest
import yaml

from bitscale import hookimpl
from bitscale.cli import main
from bitscale.harness.store import ResultStore
from bitscale.testing import synthetic
from bitscale.testing.toy import ToyFamily

SEED = 20250111
CASES = 150  # per kind; ~10 s in all on a busy 2-core machine

EXPERIMENT = {
    "name": "fuzz",
    "models": [{"family": "toy", "sizes": ["d1"], "options": {}}],
    "quantizers": ["rtn"],
    "precisions": ["W16A16", "W8A16", "W4A8"],
    "seeds": [0, 1],
    "budget": {"model_bits": 1e9},
    "evaluation": {"num_samples": 100, "calibration_batches": 1, "batch_size": 50},
}
ODD_VALUES = [
    None,
    True,
    0,
    -1,
    2**31,
    2**70,
    1e308,
    float("nan"),
    float("inf"),
    -0.0,
    "",
    "W4A8",
    "x" * 300,
    "💥",
    "../../etc/passwd",
    "<script>",
    [],
    [None],
    {},
    {"a": {"b": {"c": []}}},
    "2024-13-45",
    ["W3A3:fp", "W16A16"],
    {"family": "toy"},
    "toy",
    "rtn",
]


def _digest(path) -> str:
    """The store's content (schema and rows), whatever state its WAL file is in."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


def _mutate_structure(obj, rng: random.Random):
    obj = copy.deepcopy(obj)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice([p for p in _paths(obj) if p])
        parent = obj
        for part in path[:-1]:
            parent = parent[part]
        action = rng.random()
        if action < 0.6:
            parent[path[-1]] = copy.deepcopy(rng.choice(ODD_VALUES))
        elif action < 0.8:
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[rng.choice(["extra", "seed", "Models", 7])] = rng.choice(ODD_VALUES)
        if not obj:
            break
    return obj


def _mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        action, at = rng.random(), rng.randrange(max(1, len(data)))
        if action < 0.4:
            data[at : at + 1] = bytes([rng.randrange(256)])
        elif action < 0.6:
            data = data[:at]
        elif action < 0.8:
            data[at:at] = rng.choice(
                [b"\xff\xfe", b"\x00", b"{[", b": : :", b"\n  - ", b"&a *a", b"!!python/object:os.system"]
            )
        else:
            data[at:at] = data[at : at + rng.randrange(1, 40)]
    return bytes(data)


@pytest.fixture
def toy(register_plugin):
    plugin = types.ModuleType("toy_plugin")
    plugin.register_models = hookimpl(lambda register: register(ToyFamily()))
    return register_plugin(plugin)


def _one_line_error(err: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bitscale: error: "), err
    assert "Traceback" not in err


def test_mutated_experiment_files(tmp_path, capsys, toy):
    rng = random.Random(SEED)
    store = tmp_path / "s.db"
    synthetic.fill(
        ResultStore(f"sqlite:///{store}"),
        synthetic.SyntheticGrid(families={"t": {"d1": 10}}, precisions=["W16A16"], seeds=[0]),
    )
    before = _digest(store)
    text = yaml.safe_dump(EXPERIMENT).encode()
    codes = {0: 0, 2: 0}
    for i in range(CASES):
        if i % 2:
            data = _mutate_bytes(text, rng)
        else:
            data = yaml.safe_dump(_mutate_structure(EXPERIMENT, rng), allow_unicode=True).encode()
        exp = tmp_path / f"e{i}.yaml"
        exp.write_bytes(data)
        code = main(["run", str(exp), "--store", str(store), "--dry-run", "--no-progress"])
        err = capsys.readouterr().err
        assert code in (0, 2), (code, data)
        codes[code] += 1
        if code == 2:
            _one_line_error(err)
            # The same input without --dry-run: refused before the store is touched.
            assert main(["run", str(exp), "--store", str(store), "--no-progress"]) == 2, data
            _one_line_error(capsys.readouterr().err)
            assert _digest(store) == before, data
    assert codes[0] and codes[2]  # the mutations reach both outcomes


def test_mutated_baselines(tmp_path, capsys):
    rng = random.Random(SEED + 1)
    grid = synthetic.SyntheticGrid(
        families={"toyvar": {"d1": 100_000, "d2": 200_000}},
        methods={"rtn": 1.0},
        precisions=["W16A16", "W4A16"],
        seeds=[0, 1],
    )
    store = tmp_path / "s.db"
    synthetic.fill(ResultStore(f"sqlite:///{store}"), grid)
    good = tmp_path / "good.json"
    assert main(["baseline", "export", "--store", str(store), "--out", str(good)]) == 0
    capsys.readouterr()
    before = _digest(store)
    base = json.loads(good.read_text())
    text = good.read_bytes()
    codes = {0: 0, 1: 0, 2: 0}
    for i in range(CASES):
        if i % 2:
            data = _mutate_bytes(text, rng)
        else:
            data = json.dumps(_mutate_structure(base, rng)).encode()
        path = tmp_path / f"b{i}.json"
        path.write_bytes(data)
        code = main(["check", "--baseline", str(path), "--store", str(store)])
        out, err = capsys.readouterr()
        assert code in (0, 1, 2), (code, data)
        codes[code] += 1
        if code == 2:
            _one_line_error(err)
        else:
            assert "Traceback" not in out + err
        assert _digest(store) == before, data
    assert codes[2] and codes[0] + codes[1]
