"""Tests for datacarto.html: the self-contained interactive page, checked in a real headless Chromium.

The browser tests need Debian's ``chromium`` (or any Chromium: set ``DATACARTO_CHROMIUM``) and the
``playwright`` Python package (no browser download: it drives the system Chromium). They skip only
when no Chromium binary is found.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import shutil
import subprocess

import numpy as np
import polars as pl
import pytest

import datacarto as dc
from datacarto import html
from _helpers import controlled_dynamics

TRICKY = 'a <b>bold</b> & "quoted" </script><script>window.pwned = 1</script> text'
#: Text cells a spreadsheet would run as formulas, and the apostrophe-prefixed form the CSV must hold.
FORMULAS = ["=SUM(1)", "+1", "-2", "@x", "\tTAB"]
PAGE_TITLE = "__PLOTLY__ & <b>map</b>"


def neutralised(text):
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def make_map(n=400, seed=0):
    """Clusters with a clear gap in confidence (nothing in (0.6, 0.7)) and one isolated outlier (example 0)."""
    rng = np.random.default_rng(seed)
    high = rng.random(n) < 0.6
    confidence = np.where(high, rng.uniform(0.72, 0.95, n), rng.uniform(0.1, 0.58, n))
    variability = np.where(high, rng.uniform(0.02, 0.05, n), rng.uniform(0.03, 0.09, n))
    # far from everything and each other: clean hover targets
    confidence[:2], variability[:2] = (0.5, 0.3), (0.3, 0.2)
    probs, gold = controlled_dynamics(confidence, variability)
    texts = [TRICKY if i == 1 else "=SUM(1)" if i == 3 else f"example text number {i}" for i in range(n)]
    metadata = {
        "text": texts,
        "source": [f"s{i % 3}" for i in range(n)],
        "note": [TRICKY if i == 2 else FORMULAS[i % len(FORMULAS)] for i in range(n)],  # text metadata
        "offset": [-0.5 - i / 1000 for i in range(n)],  # negative numbers: must stay numbers
    }
    return dc.DataMap.from_dynamics(probs, gold, metadata, label_names=["pos", "neu", "neg"]).regions()


def make_multilabel(n=300, n_labels=4, seed=1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=(n, n_labels))
    probs = np.clip(np.where(y[None] == 1, 0.7, 0.2) + 0.2 * rng.standard_normal((5, n, n_labels)), 0.001, 0.999).astype(np.float32)
    return dc.DataMap.from_dynamics(probs, y, [f"doc {i}" for i in range(n)], label_names=["joy", "anger", "fear", "love"]).regions()


def embedded(path):
    """The JSON data block of a written page, with the typed columns decoded."""
    text = path.read_text(encoding="utf-8")
    match = re.search(r'<script type="application/json" id="dc-data">(.*?)</script>', text, re.S)
    data = json.loads(match.group(1))
    kinds = {"f4": "<f4", "f8": "<f8", "i4": "<i4", "u1": "u1"}
    columns = {k: np.frombuffer(base64.b64decode(v["b64"]), dtype=kinds[v["dtype"]]) for k, v in data["columns"].items()}
    return data, columns, text


# ------------------------------------------------------------------------------------- no browser


def test_page_is_self_contained(tmp_path):
    out = html.write_html(make_map(), tmp_path / "sub" / "map.html", title="My <map>")
    text = out.read_text(encoding="utf-8")
    assert out.exists() and text.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script[^>]*\bsrc=", text) and "<link" not in text  # nothing fetched
    assert "Plotly" in text and "scattergl" in text
    assert "<title>My &lt;map&gt;</title>" in text
    assert not [p.name for p in out.parent.iterdir() if p.name != "map.html"]  # no temporary file left


def test_embedded_data_matches_the_frame(tmp_path):
    dm = make_map()
    data, columns, text = embedded(html.write_html(dm, tmp_path / "m.html"))
    frame = dm.frame.sort("example")
    assert data["n"] == data["n_total"] == frame.height and not data["subsampled"]
    np.testing.assert_array_equal(columns["example"], frame["example"].to_numpy())
    for name in dc.STATISTICS:
        np.testing.assert_allclose(columns[name], frame[name].to_numpy().astype(np.float32), rtol=1e-6)
    assert data["text"][1] == TRICKY and data["meta"]["source"][:3] == ["s0", "s1", "s2"]
    assert [data["categorical"]["region"][k] for k in columns["region"][:5]] == frame["region"].to_list()[:5]
    assert data["categorical"]["gold"] == ["pos", "neu", "neg"]
    # no text can close the data block early
    assert "window.pwned" in text and "</script><script>window.pwned" not in text


def test_subsampling_above_max_points(tmp_path):
    dm = make_map(n=400)
    data, columns, text = embedded(html.write_html(dm, tmp_path / "s.html", max_points=100))
    assert data["n"] == 100 and data["n_total"] == 400 and data["subsampled"]
    assert "random sample of 100 of 400" in text
    ids = columns["example"]
    assert len(set(ids.tolist())) == 100 and np.all(np.diff(ids) > 0)
    conf = dm.frame["confidence"].to_numpy()[ids]
    np.testing.assert_allclose(columns["confidence"], conf.astype(np.float32))


def test_multilabel_rows_are_label_major(tmp_path):
    dm = make_multilabel()
    data, columns, _ = embedded(html.write_html(dm, tmp_path / "ml.html", max_points=4 * 120))
    n = data["n"]
    assert n == 120 and data["views"] == ["joy", "anger", "fear", "love"]
    ids = columns["example"]
    for j in range(4):
        rows = dm.frame.filter((pl.col("label") == j) & pl.col("example").is_in(ids)).sort("example")
        np.testing.assert_allclose(columns["variability"][j * n:(j + 1) * n], rows["variability"].to_numpy().astype(np.float32), rtol=1e-6)
    assert data["text"][0] == f"doc {ids[0]}"


def test_placeholder_names_in_user_text_stay_text(tmp_path):
    dm = make_map(n=60)
    bundle_header = "* plotly.js v"
    for title in ("__PLOTLY__", "__DATA__ __APP__ __TITLE__ __NOTICE__"):
        text = html.write_html(dm, tmp_path / "p.html", title=title).read_text(encoding="utf-8")
        assert f"<title>{title}</title>" in text and f'<h1 id="dc-title">{title}</h1>' in text
        assert text.count(bundle_header) == 1  # plotly.js pasted once, in its <script>
        data, _, _ = embedded(tmp_path / "p.html")  # the data block is intact
        assert data["n"] == 60
    # a text cell naming a placeholder stays a text cell
    m = dc.DataMap.from_dynamics(*controlled_dynamics(np.full(3, 0.5), np.full(3, 0.1)), {"text": ["__PLOTLY__", "__DATA__", "x"]})
    data, _, text = embedded(html.write_html(m, tmp_path / "q.html"))
    assert data["text"] == ["__PLOTLY__", "__DATA__", "x"] and text.count(bundle_header) == 1


def test_script_end_in_any_text_cannot_break_the_page(tmp_path):
    data, _, text = embedded(html.write_html(make_map(n=60), tmp_path / "t.html", title="</script><script>window.pwned=1</script>"))
    assert data["meta"]["note"][2] == TRICKY and data["text"][1] == TRICKY  # round trips through JSON
    # the only script ends are the page's own three blocks
    assert len(re.findall(r"</script", text, re.IGNORECASE)) == 3
    assert "<title>&lt;/script&gt;&lt;script&gt;window.pwned=1&lt;/script&gt;</title>" in text


def test_header_carries_title_region_counts_and_histograms(tmp_path):
    dm = make_map()
    data, _, text = embedded(html.write_html(dm, tmp_path / "h.html", title=PAGE_TITLE, max_points=100))
    assert '<h1 id="dc-title">__PLOTLY__ &amp; &lt;b&gt;map&lt;/b&gt;</h1>' in text
    frame = dm.frame
    counts = dm.region_counts()
    header = re.search(r'<div class="sub" id="dc-regions">(.*?)</div>', text, re.S).group(1)
    assert "thresholds rule: easy confidence &gt; 0.6, hard confidence &lt; 0.4" in header
    for region, words in (("easy", "easy-to-learn"), ("ambiguous", "ambiguous"), ("hard", "hard-to-learn")):
        assert f"{words} {counts[region]:,} ({100 * counts[region] / frame.height:.0f}%)" in header
    (info,) = data["view_info"]
    assert info["counts"] == counts and info["total"] == 400  # every example, though 100 are embedded
    # the three histograms, over every example
    h = info["histograms"]
    expected, _ = np.histogram(frame["confidence"].to_numpy(), bins=30, range=(0, 1))
    assert h["confidence"]["counts"] == expected.tolist()
    expected, _ = np.histogram(frame["variability"].to_numpy(), bins=30, range=(0, data["xmax"]))
    assert h["variability"]["counts"] == expected.tolist()
    n_epochs = dm.epochs[1] - dm.epochs[0]
    assert h["correctness"]["x"] == [k / n_epochs for k in range(n_epochs + 1)]
    assert h["correctness"]["counts"] == np.bincount(np.rint(frame["correctness"].to_numpy() * n_epochs).astype(int), minlength=n_epochs + 1).tolist()
    # the threshold rule's boundaries, and the region labels on their clouds
    assert [(b["region"], b["y"]) for b in info["boundaries"]] == [("easy", [0.6, 0.6]), ("hard", [0.4, 0.4])]
    for region, (x, y) in info["anchors"].items():
        rows = frame.filter(pl.col("region") == region)
        assert np.any(np.isclose(rows["variability"].to_numpy(), x, atol=1e-6) & np.isclose(rows["confidence"].to_numpy(), y, atol=1e-6))


def test_multilabel_header_per_label(tmp_path):
    dm = make_multilabel().regions("quantiles")
    data, _, _ = embedded(html.write_html(dm, tmp_path / "ml.html"))
    per_label = dm.region_counts(per_label=True).sort("label")
    assert len(data["view_info"]) == 4
    for j, info in enumerate(data["view_info"]):
        row = per_label.row(j, named=True)
        assert info["counts"] == {k: row[k] for k in info["counts"]}
        assert {b["region"] for b in info["boundaries"]} == {"easy", "ambiguous", "hard"}
    assert data["view_info"][0]["boundaries"] != data["view_info"][1]["boundaries"]  # each label's own cut-offs


def test_write_is_atomic_on_a_full_disk(tmp_path):
    """A page that does not fit leaves the old page whole and no temporary file behind."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    # room for one page (~5 MB: plotly.js) but not a second one beside it
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=7m", "tmpfs", str(mount_point)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        target = mount_point / "map.html"
        html.write_html(make_map(n=50), target, title="first")
        before = target.read_bytes()
        with pytest.raises(OSError):
            html.write_html(make_map(n=50), target, title="second")
        assert target.read_bytes() == before and b"<title>first</title>" in before
        assert os.listdir(mount_point) == ["map.html"]
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_bad_arguments(tmp_path):
    dm = make_map(n=50)
    with pytest.raises(TypeError, match="title"):
        html.write_html(dm, tmp_path / "x.html", title=3)
    with pytest.raises(dc.DatacartoError, match="text_column"):
        html.write_html(dm, tmp_path / "x.html", text_column="nope")
    with pytest.raises(dc.DatacartoError, match="color"):
        html.write_html(dm, tmp_path / "x.html", color="nope")
    with pytest.raises(dc.DatacartoError, match="max_points"):
        html.write_html(dm, tmp_path / "x.html", max_points=0)


# ------------------------------------------------------------------------------------- browser


# A real browser: about 10 s for launching Chromium and evaluating the 4.8 MB plotly.js twice.
browser_test = pytest.mark.slow


def _chromium():
    for candidate in (os.environ.get("DATACARTO_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium"):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    if executable is None:
        pytest.skip("no Chromium binary (apt install chromium, or set DATACARTO_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser tests need the 'playwright' package (pip install playwright; no browser download needed)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, args=["--no-sandbox", "--enable-unsafe-swiftshader"])
        yield b
        b.close()


class Page:
    """A loaded page plus everything it logged and requested."""

    def __init__(self, browser, path):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        self.errors, self.requests = [], []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(path.as_uri())
        self.page.wait_for_function("document.body.dataset.ready === '1'", timeout=60_000)

    def js(self, expression, arg=None):
        return self.page.evaluate(expression, arg)

    def pixel(self, x, y):
        """Viewport pixel of the data point (x, y)."""
        return self.js("""([x, y]) => { const gd = datacarto.gd, s = gd._fullLayout._size, r = gd.getBoundingClientRect();
            return [r.left + s.l + gd._fullLayout.xaxis.l2p(x), r.top + s.t + gd._fullLayout.yaxis.l2p(y)]; }""", [x, y])

    def plot_png(self):
        return self.page.locator("#dc-plot").screenshot()


def coloured_pixels(png):
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int(((rgb.max(axis=2) - rgb.min(axis=2)) > 60).sum())  # saturated: markers, not grey axes/text


@pytest.fixture(scope="module")
def loaded(browser, tmp_path_factory):
    dm = make_map()
    path = html.write_html(dm, tmp_path_factory.mktemp("html") / "map.html", title=PAGE_TITLE)
    page = Page(browser, path)
    yield dm, page
    page.page.close()


@browser_test
def test_page_loads_offline_without_errors_and_draws_points(loaded):
    dm, page = loaded
    assert page.errors == []
    assert all(url.startswith(("file:", "data:", "blob:", "about:")) for url in page.requests), page.requests
    assert page.js("datacarto.gd._fullData[0].type") == "scattergl"
    assert page.js("datacarto.gd._fullData[0].x.length") == dm.frame.height
    assert page.js("!!datacarto.gd._fullLayout._glcanvas && datacarto.gd.querySelectorAll('canvas').length > 0")
    assert page.js("(() => { const c = datacarto.gd.querySelector('canvas.gl-canvas-context'); return !!(c && (c.getContext('webgl') || c.getContext('experimental-webgl'))); })()")
    assert coloured_pixels(page.plot_png()) > 2_000  # the WebGL canvas really shows markers
    assert page.js("document.getElementById('dc-summary').textContent").startswith("400 examples")
    assert page.js("window.pwned === undefined")


@browser_test
def test_page_shows_title_region_counts_boundaries_and_histograms(loaded):
    dm, page = loaded
    assert page.js("document.title") == PAGE_TITLE and page.js("document.getElementById('dc-title').textContent") == PAGE_TITLE
    counts = dm.region_counts()
    regions = page.js("document.getElementById('dc-regions').textContent")
    for region, words in (("easy", "easy-to-learn"), ("ambiguous", "ambiguous"), ("hard", "hard-to-learn")):
        assert f"{words} {counts[region]}" in regions
    # the rule's boundaries as line traces after the examples, named by the rule
    lines = page.js("datacarto.gd._fullData.slice(1).map(t => [t.name, Array.from(t.y)])")
    assert lines == [["easy: confidence &gt; 0.6", [0.6, 0.6]], ["hard: confidence &lt; 0.4", [0.4, 0.4]]]
    legend = page.js("Array.from(datacarto.gd.querySelectorAll('.legendtext')).map(e => e.textContent)")
    assert legend == ["easy: confidence > 0.6", "hard: confidence < 0.4"]  # the entities shown as characters
    labels = page.js("datacarto.gd._fullLayout.annotations.map(a => a.text)")
    assert sorted(t.split("<br>")[0] for t in labels) == ["ambiguous", "easy-to-learn", "hard-to-learn"]
    # three histograms, each counting every example, drawn as SVG bars
    for name in ("confidence", "variability", "correctness"):
        total = page.js(f"(() => {{ const d = document.getElementById('dc-hist-{name}'); return d._fullData[0].y.reduce((a, b) => a + b, 0); }})()")
        assert total == dm.frame.height, name
        assert page.js(f"document.querySelectorAll('#dc-hist-{name} .bars path').length") > 0
    assert page.errors == []


@browser_test
def test_csv_neutralises_formula_text_and_keeps_numbers(loaded):
    dm, page = loaded
    page.js("datacarto.select([...Array(datacarto.data.n).keys()])")
    rows = list(csv.DictReader(io.StringIO(page.js("datacarto.csv()"))))
    frame = dm.frame.sort("example")
    assert len(rows) == frame.height
    assert rows[3]["text"] == "'=SUM(1)" and rows[1]["text"] == TRICKY
    assert [r["note"] for r in rows] == [neutralised(t) for t in frame["note"].to_list()]
    assert {r["note"][:2] for r in rows} >= {"'=", "'+", "'-", "'@", "'\t"}
    # numbers stay numbers: negative margins and a negative numeric metadata column
    margins = np.array([float(r["margin"]) for r in rows])
    assert (margins < 0).any() and all(not r["margin"].startswith("'") for r in rows)
    np.testing.assert_allclose(margins, frame["margin"].to_numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose([float(r["offset"]) for r in rows], frame["offset"].to_numpy())
    page.page.click("#dc-clear")


@browser_test
def test_hover_shows_text_and_statistics(loaded):
    dm, page = loaded
    row = dm.frame.row(0, named=True)
    x, y = page.pixel(row["variability"], row["confidence"])
    page.page.mouse.move(x - 30, y - 30)
    page.page.mouse.move(x, y, steps=5)
    tip = page.page.locator("#dc-tip")
    tip.wait_for(state="visible", timeout=10_000)
    text = tip.inner_text()
    assert "example text number 0" in text and "example 0" in text
    assert "confidence" in text and f"{float(np.float32(row['confidence'])):.6g}" in text
    assert "source" in text and "s0" in text and "pos" in text  # metadata and the gold class name
    page.page.mouse.move(5, 5)


@browser_test
def test_hover_shows_html_text_literally(loaded):
    dm, page = loaded
    row = dm.frame.row(1, named=True)
    x, y = page.pixel(row["variability"], row["confidence"])
    page.page.mouse.move(x + 30, y + 30)
    page.page.mouse.move(x, y, steps=5)
    page.page.locator("#dc-tip").wait_for(state="visible", timeout=10_000)
    assert TRICKY in page.page.locator("#dc-tip .text").inner_text()
    page.page.mouse.move(5, 5)
    page.page.locator("#dc-tip").wait_for(state="hidden", timeout=10_000)


def drag(page, corners):
    mouse = page.page.mouse
    mouse.move(*corners[0])
    mouse.down()
    for corner in corners[1:] + corners[:1]:
        mouse.move(*corner, steps=2)
    mouse.up()


@browser_test
def test_lasso_selection_fills_the_table_and_downloads_csv(loaded):
    dm, page = loaded
    xmax = page.js("datacarto.gd._fullLayout.xaxis.range[1]")
    # a lasso around everything above the confidence gap (0.6, 0.7)
    left, top = page.pixel(0.002, 1.01)
    right, bottom = page.pixel(xmax * 0.99, 0.65)
    drag(page, [(left, top), (right, top), (right, bottom), (left, bottom)])
    expected = dm.frame.filter(pl.col("confidence") > 0.65).sort("example")
    page.page.wait_for_function(f"datacarto.selection().length === {expected.height}", timeout=10_000)
    assert page.js("document.getElementById('dc-count').textContent") == f"{expected.height} examples selected"
    assert page.page.locator("#dc-table tbody tr").count() == expected.height
    with page.page.expect_download() as info:
        page.page.click("#dc-download")
    download = info.value
    assert download.suggested_filename == "datacarto-selection.csv"
    rows = list(csv.DictReader(io.StringIO(open(download.path(), encoding="utf-8").read())))
    assert len(rows) == expected.height
    rows.sort(key=lambda r: int(r["example"]))
    assert [int(r["example"]) for r in rows] == expected["example"].to_list()
    np.testing.assert_allclose([float(r["confidence"]) for r in rows], expected["confidence"].to_numpy(), rtol=1e-5)
    np.testing.assert_allclose([float(r["margin"]) for r in rows], expected["margin"].to_numpy(), rtol=1e-4, atol=1e-6)
    assert [r["region"] for r in rows] == expected["region"].to_list()
    assert [r["text"] for r in rows] == [neutralised(t) for t in expected["text"].to_list()]
    assert {r["gold"] for r in rows} == {"pos"}
    page.page.click("#dc-clear")
    assert page.js("datacarto.selection().length") == 0 and page.page.locator("#dc-table tbody tr").count() == 0


@browser_test
def test_box_selection_and_sorting(loaded):
    dm, page = loaded
    page.js("Plotly.relayout(datacarto.gd, {dragmode: 'select'})")
    xmax = page.js("datacarto.gd._fullLayout.xaxis.range[1]")
    left, top = page.pixel(0.002, 0.6)
    right, bottom = page.pixel(xmax * 0.99, -0.01)
    mouse = page.page.mouse
    mouse.move(left, top)
    mouse.down()
    mouse.move(right, bottom, steps=3)
    mouse.up()
    expected = dm.frame.filter(pl.col("confidence") < 0.6)
    page.page.wait_for_function(f"datacarto.selection().length === {expected.height}", timeout=10_000)
    page.page.click("#dc-table th[data-key='confidence']")  # sort ascending by confidence
    first = page.page.locator("#dc-table tbody tr").first.locator("td").first.inner_text()
    assert int(first) == expected.sort("confidence")["example"][0]
    page.page.click("#dc-clear")


@browser_test
def test_colour_control_recolours_the_markers(loaded):
    dm, page = loaded
    before_png = page.plot_png()
    before = page.js("Array.from(datacarto.gd._fullData[0].marker.color.slice(0, 50))")
    np.testing.assert_allclose(before, dm.frame["correctness"].to_numpy()[:50], atol=1e-6)
    page.page.select_option("#dc-color", "margin")
    after = page.js("Array.from(datacarto.gd._fullData[0].marker.color.slice(0, 50))")
    np.testing.assert_allclose(after, dm.frame["margin"].to_numpy()[:50], rtol=1e-5, atol=1e-6)
    assert page.js("datacarto.gd._fullData[0].marker.colorbar.title.text") == "margin"
    assert page.plot_png() != before_png
    page.page.select_option("#dc-color", "region")
    colours = page.js("datacarto.gd._fullData[0].marker.color.slice(0, 400)")
    regions = dm.frame["region"].to_list()
    by_region = {}
    for colour, region in zip(colours, regions):
        by_region.setdefault(region, set()).add(colour)
    assert all(len(c) == 1 for c in by_region.values()) and len({c.pop() for c in by_region.values()}) == len(by_region)
    assert "easy" in page.js("document.getElementById('dc-legend').textContent")
    assert page.errors == []


@browser_test
def test_multilabel_label_control_on_a_subsampled_page(browser, tmp_path):
    dm = make_multilabel(n=300)
    page = Page(browser, html.write_html(dm, tmp_path / "ml.html", color="confidence", max_points=4 * 150))
    try:
        assert page.errors == []
        assert "150 of 300" in page.page.locator("#dc-notice").inner_text()
        assert page.js("document.getElementById('dc-label-wrap').hidden") is False
        ids = np.array(page.js("Array.from(datacarto.columns.example)"))
        assert len(ids) == 150 and len(set(ids.tolist())) == 150
        for j, name in ((0, "joy"), (2, "fear")):
            page.page.select_option("#dc-label", label=name)
            rows = dm.frame.filter((pl.col("label") == j) & pl.col("example").is_in(ids)).sort("example")
            np.testing.assert_allclose(page.js("Array.from(datacarto.gd._fullData[0].x)"), rows["variability"].to_numpy(), rtol=1e-6)
            np.testing.assert_allclose(page.js("Array.from(datacarto.gd._fullData[0].marker.color)"), rows["confidence"].to_numpy(), rtol=1e-6)
        # the hover names the label being shown
        row = dm.frame.filter((pl.col("label") == 2) & (pl.col("example") == int(ids[0]))).row(0, named=True)
        page.js("([i]) => datacarto.select([i])", [0])
        assert page.page.locator("#dc-table tbody tr").count() == 1
        cells = page.page.locator("#dc-table tbody tr td").all_inner_texts()
        assert cells[:3] == [str(ids[0]), "fear", str(row["gold"])]
        # the header's counts and the histograms follow the label shown, over all 300 examples
        fear = dm.frame.filter(pl.col("label") == 2)
        counts = dict(fear["region"].value_counts().iter_rows())
        regions = page.js("document.getElementById('dc-regions').textContent")
        assert all(f"{words} {counts.get(region, 0)}" in regions for region, words in (("easy", "easy-to-learn"), ("hard", "hard-to-learn")))
        expected, _ = np.histogram(fear["confidence"].to_numpy(), bins=30, range=(0, 1))
        assert page.js("Array.from(document.getElementById('dc-hist-confidence')._fullData[0].y)") == expected.tolist()
        assert page.errors == []
    finally:
        page.page.close()


def test_datamap_to_html(tmp_path):
    dm = make_map(n=60)
    out = dm.to_html(tmp_path / "dm.html")
    data, _, _ = embedded(out)
    assert data["n"] == 60 and data["text_column"] == "text"


def test_binary_map_without_text(tmp_path):
    rng = np.random.default_rng(5)
    probs = rng.uniform(size=(4, 80, 1)).astype(np.float32)
    dm = dc.DataMap.from_dynamics(probs, rng.integers(0, 2, 80), label_names=["neg", "pos"])
    data, columns, _ = embedded(html.write_html(dm, tmp_path / "b.html", color="gold"))
    assert data["text"] is None and data["views"] is None and data["color"] == "gold"
    assert data["categorical"]["gold"] == ["neg", "pos"] and data["meta"] == {}  # gold_name is not repeated as metadata
    assert "region" not in data["colour_options"]
