"""nncli report: one self-contained HTML page, checked in headless Chromium (no broken images, no requests
outside the page, readable at phone width, printable), and what it holds for runs, comparisons and sweeps."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import nncli
from helpers import make_csv, make_digits, mlp_config
from nncli.cli import app

runner = CliRunner()
CHROMIUM = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium") if p and Path(p).exists()), None)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Two runs, a compare-optimizers folder and a sweep folder, all tiny."""
    root = tmp_path_factory.mktemp("report")
    digits = make_digits(root / "digits", n_train=150, n_test=45)
    table = make_csv(root / "table.csv", n=120)
    runs = [nncli.train(mlp_config(digits, epochs=e), out=root / f"run-{e}").run_dir for e in (2, 3)]
    compare = {
        "name": "tab", "data": {"source": "csv", "path": str(table), "target": "label"},
        "model": {"layers": [{"type": "dense", "units": 1}]}, "loss": "binary_cross_entropy",
        "compare": {"optimizers": [{"type": "gd"}, {"type": "adam"}], "max_iterations": 4},
    }
    comparison = nncli.compare_optimizers(compare, out=root / "cmp").out_dir
    sweep = nncli.sweep(mlp_config(digits, epochs=1), grid=["optimizer.learning_rate=0.01,0.03"], engine="serial", out=root / "sweep").folder
    return {"runs": runs, "compare": comparison, "sweep": sweep, "root": root}


class Links(HTMLParser):
    """Every tag, and every attribute that could make a browser fetch something."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [value or "" for name, value in attrs if name in ("src", "href", "srcset", "action", "poster", "data")]


def parse(page: str) -> Links:
    links = Links()
    links.feed(page)
    return links


PROBE = """<script>
window.addEventListener('load', () => {
  const images = Array.from(document.images);
  const result = {
    images: images.length,
    broken: images.filter(i => !i.complete || i.naturalWidth === 0).length,
    requests: performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('data:')),
    scroll_width: document.documentElement.scrollWidth, viewport: window.innerWidth,
  };
  const out = document.createElement('pre');
  out.id = 'nncli-probe';
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>"""


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-extensions", "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


def need_chromium():
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing; .ci/run installs Debian's chromium package (apt-get install chromium)")
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); the page's browser checks need it")


def probe(tmp_path: Path, page: Path, width: int) -> dict:
    """Open a copy of the page with a probe script appended: images, broken ones, requests, page width."""
    copy = tmp_path / f"probe-{width}.html"
    copy.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    done = chromium(tmp_path, f"--window-size={width},900", "--virtual-time-budget=10000", "--dump-dom", copy.as_uri())
    found = re.search(r'<pre id="nncli-probe">(.*?)</pre>', done.stdout)
    assert found, done.stderr[-2000:]
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def test_a_report_is_one_offline_page_that_a_browser_shows_whole(folders, tmp_path, plots):
    need_chromium()
    run = folders["runs"][0]
    before = sorted(p for p in run.rglob("*"))
    result = runner.invoke(app, ["report", str(run), "--out", str(tmp_path / "report.html")])
    assert result.exit_code == 0, result.output
    page = tmp_path / "report.html"
    assert result.stdout.strip() == str(page)
    assert sorted(p for p in run.rglob("*")) == before  # nothing written into the run folder
    text = page.read_text(encoding="utf-8")
    links = parse(text)
    assert "script" not in links.tags and "link" not in links.tags and "iframe" not in links.tags
    assert links.urls and all(u.startswith(("data:image/png;base64,", "#")) for u in links.urls), [u[:40] for u in links.urls]
    assert "url(" not in text and "@import" not in text
    for words in ("Resolved config", "History", "Final evaluation", "confusion matrix", "What the network computes", "@media print", "max-width: 640px"):
        assert words in text, words

    desktop = probe(tmp_path, page, 1280)
    assert desktop["images"] >= 6 and desktop["broken"] == 0 and desktop["requests"] == [], desktop
    phone = probe(tmp_path, page, 390)  # headless chromium's narrowest window
    assert phone["broken"] == 0 and phone["scroll_width"] <= phone["viewport"], phone  # tables scroll inside the page

    shot = tmp_path / "report.png"
    done = chromium(tmp_path, "--window-size=1280,2400", f"--screenshot={shot}", page.as_uri())
    assert shot.is_file(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), np.float64)
    assert pixels.shape == (2400, 1280) and pixels.std() > 10  # something is drawn
    pdf = tmp_path / "report.pdf"
    done = chromium(tmp_path, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", page.as_uri())
    assert pdf.is_file() and pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 50_000, done.stderr[-2000:]


def test_several_runs_a_comparison_and_a_sweep_in_one_page(folders, tmp_path, plots):
    a, b = folders["runs"]
    result = nncli.report([a, b, folders["compare"], folders["sweep"]], tmp_path / "all.html")
    assert [kind for _, kind in result.folders] == ["run", "run", "compare-optimizers", "sweep"]
    text = result.out.read_text(encoding="utf-8")
    assert text.index("All runs side by side") < text.index("run-2</h2>") < text.index("run-3</h2>")
    overview = text[text.index("All runs side by side") : text.index("run-2</h2>")]
    assert str(a) in overview and str(b) in overview and "test_accuracy" in overview and "data:image/png;base64," in overview
    assert "cmp (compare-optimizers)" in text and "summary.csv: one row per optimizer" in text and ">gd<" in text and ">adam<" in text
    assert "sweep (sweep)" in text and "runs.csv: one row per trial" in text and "best.yaml" in text
    assert text.count('<img src="data:image/png;base64,') >= 2 * 6 + 1 + 1 + 2  # runs' figures, overlay, curves, scores and trials
    assert all(u.startswith(("data:", "#")) for u in parse(text).urls)
    again = nncli.report([a], tmp_path / "all.html").out
    assert again.name == "all-2.html"  # never overwritten
    assert callable(nncli.report) and callable(nncli.visualize)  # the API functions, not the modules behind them


def test_a_folder_that_is_not_a_run_is_one_error_line(tmp_path):
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "missing"):
        result = runner.invoke(app, ["report", str(folder), "--out", str(tmp_path / "r.html")])
        assert result.exit_code == 2 and result.stderr.startswith("error:") and result.stderr.count("\n") == 1, result.output
    assert not (tmp_path / "r.html").exists()
