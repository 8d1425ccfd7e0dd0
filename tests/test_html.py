"""The static HTML page: content, escaping of plugin-supplied strings, and a real headless-browser check."""

import re
import shutil
import subprocess

import pytest

from bitscale.cli import main
from bitscale.leaderboard.paper import import_paper
from bitscale.testing import synthetic

EVIL = '<img src=x onerror=alert(1)>"&'
GRID = synthetic.SyntheticGrid(
    families={"toyvar": {"d1": 100_000, "d2": 200_000, "d4": 400_000}},
    methods={"rtn": 1.0, EVIL: 0.9},
    precisions=["W16A16", "W4A16", "W8A8"],
    seeds=[0, 1],
)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from bitscale.harness.store import ResultStore

    tmp = tmp_path_factory.mktemp("html")
    store = ResultStore(f"sqlite:///{tmp / 's.db'}")
    synthetic.bulk_fill(store, GRID)
    rec = synthetic.failed_record("toyvar", "d4", 400_000, "W4A16", "awq", error="ValueError: </script><b>boom</b>")
    store.record(**rec)
    import_paper(store)
    out = tmp / "page.html"
    assert (
        main(
            [
                "leaderboard",
                "--store",
                str(tmp / "s.db"),
                "--format",
                "html",
                "--out",
                str(out),
                "--budget",
                "model_bits=2e6",
                "--jobs",
                "1",
                "--bootstrap",
                "100",
            ]
        )
        == 0
    )
    return out


def test_page_has_tables_plots_fits_protocols_and_provenance(page):
    html = page.read_text()
    assert html.count('<table class="lb sortable"') == 5  # measured + paper Tables 2-5
    assert len(re.findall(r'<img alt="[^"]*" src="data:image/png;base64,', html)) >= 3
    for anchor in ("leaderboard", "plots", "fits", "budgets", "protocols", "runs"):
        assert f'id="{anchor}"' in html
    assert "Every run (" in html and "cell hash" in html and "cpu (synthetic)" in html  # hardware per row
    assert "0" * 40 in html and "bitscale=synthetic" in html  # git sha and versions per row
    assert "ADM evaluations" in html and "50000" in html  # the paper's protocol details
    assert "Best (size, precision) per method within model_bits &lt;= 2e+06" in html


def test_every_plugin_string_is_escaped_and_only_our_script_may_run(page):
    html = page.read_text()
    assert "<img src=x" not in html and "onerror=alert(1)>" not in html.replace("&gt;", "")
    assert "&lt;img src=x onerror=alert(1)&gt;&quot;&amp;" in html
    assert "</script><b>boom" not in html and "&lt;/script&gt;&lt;b&gt;boom" in html
    assert html.count("<script>") == 1
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert "default-src &#x27;none&#x27;" in csp and "script-src &#x27;sha256-" in csp


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="no headless browser: `apt-get install -y chromium` to run this test")
def test_page_renders_tables_and_plots_in_headless_chromium(page, tmp_path):
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.as_uri(),
    ]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    body = re.search(r"<body([^>]*)>", dom)
    assert body, "chromium produced no DOM"
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))
    # set by the page's script once loaded: it ran (CSP hash matched), found the tables, and
    # counted images that actually decoded
    assert attrs.get("data-ready") == "1"
    assert attrs.get("data-tables") == "5"
    assert int(attrs.get("data-images-loaded", "0")) >= 3
    assert "toyvar: FID (lower is better, mean over 2 seeds [95% CI of the mean]" in dom
    assert "2.2098" in dom and "<img src=x" not in dom  # the published value as printed; no injection
