"""Documentation meta-tests (as datasette's): what plugin authors and users rely on is documented.

Every hookspec appears in docs/plugins.md with its signature; every public name of ``bitscale``
and ``bitscale.testing`` is in plugins.md; every built-in quantizer has a section in quantizers.md
(or distillation.md for training methods), every loss a row in distillation.md's loss table, and
every model family a row in zoo.md's table.
"""

import inspect
import re
from pathlib import Path

import pytest

import bitscale
import bitscale.testing
from bitscale.harness import hookspecs
from bitscale.harness.plugin_loader import HOOKS, load_plugins

DOCS = Path(__file__).resolve().parents[1] / "docs"
PLUGINS = load_plugins(entrypoints=False)


def _doc(name: str) -> str:
    return (DOCS / name).read_text()


def _headings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("#")]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hookspec_is_documented_with_its_signature(hook):
    params = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
    assert f"`{hook}({params})`" in _doc("plugins.md")


@pytest.mark.parametrize("name", bitscale.__all__)
def test_every_public_name_is_documented(name):
    assert f"| `{name}` |" in _doc("plugins.md"), f"add {name} to the public API table of docs/plugins.md"


@pytest.mark.parametrize("name", bitscale.testing.__all__)
def test_every_test_kit_name_is_documented(name):
    assert re.search(rf"`{name}\b", _doc("plugins.md")), (
        f"document bitscale.testing.{name} in docs/plugins.md section 6"
    )


@pytest.mark.parametrize("name", sorted(PLUGINS.quantizers.names()))
def test_every_built_in_quantizer_has_a_section(name):
    doc = "distillation.md" if PLUGINS.quantizers.get(name).trains else "quantizers.md"
    assert any(f"`{name}`" in h for h in _headings(_doc(doc))), f"no heading names `{name}` in docs/{doc}"


@pytest.mark.parametrize("name", sorted(PLUGINS.losses.names()))
def test_every_built_in_loss_is_in_the_loss_table(name):
    assert re.search(rf"^\| `{re.escape(name)}` \|", _doc("distillation.md"), re.M)


@pytest.mark.parametrize("name", sorted(PLUGINS.models.names()))
def test_every_built_in_model_family_is_in_the_zoo_table(name):
    assert re.search(rf"^\| `{re.escape(name)}` \|", _doc("zoo.md"), re.M)


def test_plugins_md_and_the_example_use_only_public_names():
    example = Path(__file__).resolve().parents[1] / "examples" / "bitscale-quantizer-example"
    texts = {"docs/plugins.md": _doc("plugins.md")}
    texts.update({str(f.relative_to(example.parent)): f.read_text() for f in example.rglob("*.py")})
    internal = re.compile(r"(from|import) bitscale\.(harness|quant|plugins|zoo|leaderboard|cli|precision)\b")
    bad = [f"{where}: {m.group(0)}" for where, text in texts.items() for m in internal.finditer(text)]
    assert bad == []
