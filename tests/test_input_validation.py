"""Bad experiment files are one-line errors (exit 2) before anything runs; shared cells belong to every experiment."""

import types

import pytest

from bitscale import hookimpl
from bitscale.cli import main
from bitscale.harness.config import MAX_NAME_LENGTH, parse_experiment
from bitscale.harness.planner import plan_grid
from bitscale.harness.plugin_loader import get_plugins
from bitscale.harness.runner import run_plan
from bitscale.harness.store.schema import Run
from bitscale.leaderboard.results import load_results
from bitscale.testing.toy import ToyFamily

EVAL = "evaluation: {num_samples: 100, calibration_batches: 1, batch_size: 100}\n"


@pytest.fixture
def toy(register_plugin):
    plugin = types.ModuleType("toy_plugin")
    plugin.register_models = hookimpl(lambda register: register(ToyFamily()))
    return register_plugin(plugin)


def _run(tmp_path, capsys, text: str | bytes, *extra) -> tuple[int, str]:
    exp = tmp_path / "e.yaml"
    exp.write_bytes(text if isinstance(text, bytes) else text.encode())
    code = main(["run", str(exp), "--store", str(tmp_path / "s.db"), "--no-progress", *extra])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "name: " + "x" * (MAX_NAME_LENGTH + 1) + "\nmodels: [toy]\n",
            "name: String should have at most 200 characters",
        ),
        ("name: ''\nmodels: [toy]\n", "name: String should have at least 1 character"),
        ("models: [toy]\nseeds: [-1]\n", "seeds[0]: Input should be greater than or equal to 0"),
        ("models: [toy]\nseeds: [4294967296]\n", "seeds[0]: Input should be less than or equal to 2147483647"),
        ("models: [toy]\nseeds: ['1']\n", "seeds[0]: Input should be a valid integer"),
        (
            b"name: caf\xe9\nmodels: [toy]\n",
            "not UTF-8 text (byte 0xe9 at offset 9); save the experiment file as UTF-8",
        ),
        (b"\xff\xfe\x00garbage", "not UTF-8 text (byte 0xff at offset 0)"),
        ("models: [toy]\nseeds: 2024-13-45\n", "malformed YAML: ValueError"),
    ],
)
def test_bad_experiment_files_are_one_line_errors_and_write_nothing(tmp_path, capsys, toy, text, message):
    code, err = _run(tmp_path, capsys, text)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "s.db").exists()


def test_the_store_accepts_the_longest_valid_name():
    assert Run.__table__.c.experiment.type.length == MAX_NAME_LENGTH


def test_repeated_seeds_and_sizes_plan_each_cell_once(toy):
    exp = parse_experiment(
        {"models": [{"family": "toy", "sizes": ["d1", "d1"]}, "toy"], "seeds": [0, 0, 1], "precisions": ["W16A16"]}, "x"
    )
    assert exp.seeds == [0, 1]
    cells = plan_grid(exp, get_plugins()).cells
    assert len(cells) == len({c.hash for c in cells}) == 2 * len(ToyFamily.sizes)


def test_a_shared_reference_cell_belongs_to_every_experiment_that_includes_it(tmp_path, toy):
    # W16A16 does not depend on the quantizer: experiment b reuses a's row instead of recomputing it,
    # and `--experiment b` (leaderboard, baseline export, check) must still see it.
    from bitscale.harness.store import ResultStore

    store = ResultStore(f"sqlite:///{tmp_path / 's.db'}")

    def plan(name):
        return plan_grid(
            parse_experiment(
                {
                    "name": name,
                    "models": [{"family": "toy", "sizes": ["d1"]}],
                    "evaluation": {"num_samples": 100, "calibration_batches": 1, "batch_size": 100},
                },
                name,
            ),
            get_plugins(),
        )

    assert run_plan(plan("a"), store, get_plugins(), experiment="a", progress=False).ran == 1
    assert run_plan(plan("b"), store, get_plugins(), experiment="b", progress=False).skipped_done == 1
    for name in ("a", "b"):
        runs = load_results(store, experiment=name).runs
        assert list(runs["precision"]) == ["W16A16"], name
    assert load_results(store, experiment="c").runs.empty
