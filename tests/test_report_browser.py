"""The report renders in a real headless browser (Debian's chromium) with no network: every image decodes, and
at 1,400 px no table makes the page scroll sideways (a wide table scrolls inside its box) or a row tall.

The test copies the page, appends a small script that writes each image's naturalWidth into the DOM
after the load event, and reads the DOM back with `chromium --headless --dump-dom`. The report itself
has no script. Skips when /usr/bin/chromium is absent (CI installs it: `apt-get install -y chromium`).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from pipeline import report
from tests.report_fakes import make_fake_run, report_argv

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="/usr/bin/chromium is absent (install Debian's chromium: apt-get install -y "
                                       "chromium)")

PROBE = """
<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var bad = imgs.filter(function (im) { return !(im.complete && im.naturalWidth > 0); });
  var out = document.createElement("pre");
  out.id = "probe";
  out.textContent = "IMAGES=" + imgs.length + " BROKEN=" + bad.length +
    " WIDTHS=" + imgs.map(function (im) { return im.naturalWidth; }).join(",");
  document.body.appendChild(out);
});
</script>
"""

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
         "--virtual-time-budget=10000"]


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    return subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("run")
    paths = make_fake_run(root)
    assert report.main(report_argv(paths)) == 0
    return paths["out"]


def test_every_image_renders_in_headless_chromium(page, tmp_path):
    doc = page.read_text()
    n_img = doc.count("<img ")
    assert n_img >= 4
    probed = tmp_path / "probed.html"
    probed.write_text(doc.replace("</body>", PROBE + "</body>"))
    res = _chromium(tmp_path, "--dump-dom", probed.as_uri())
    match = re.search(r"IMAGES=(\d+) BROKEN=(\d+) WIDTHS=([\d,]*)", res.stdout)
    assert match, f"the probe did not run: rc={res.returncode}\n{res.stderr[-2000:]}"
    assert int(match.group(1)) == n_img
    assert int(match.group(2)) == 0, f"broken images: {match.group(0)}"
    assert all(int(w) > 100 for w in match.group(3).split(","))


def test_screenshot_of_the_report_is_not_blank(page, tmp_path):
    shot = tmp_path / "shot.png"
    res = _chromium(tmp_path, "--window-size=1280,4000", f"--screenshot={shot}", page.as_uri())
    assert shot.exists(), f"no screenshot: rc={res.returncode}\n{res.stderr[-2000:]}"
    from PIL import Image
    im = Image.open(shot).convert("L")
    lo, hi = im.getextrema()
    assert im.size == (1280, 4000) and hi - lo > 100  # text and figures, not a uniform page


def test_the_probe_detects_a_broken_image(page, tmp_path):
    doc = page.read_text().replace('<img src="data:image/png;base64,', '<img src="data:image/png;base64,AAAA', 1)
    probed = tmp_path / "broken.html"
    probed.write_text(doc.replace("</body>", PROBE + "</body>"))
    res = _chromium(tmp_path, "--dump-dom", probed.as_uri())
    match = re.search(r"BROKEN=(\d+)", res.stdout)
    assert match and int(match.group(1)) == 1


LAYOUT_PROBE = """
<script>
window.addEventListener("load", function () {
  var root = document.documentElement;
  var rows = Array.prototype.slice.call(document.querySelectorAll("table.tbl tr"));
  var tallest = rows.reduce(function (m, r) { return Math.max(m, r.getBoundingClientRect().height); }, 0);
  var wide = Array.prototype.slice.call(document.querySelectorAll("section")).filter(function (s) {
    return s.scrollWidth > s.clientWidth + 1 || s.getBoundingClientRect().right > window.innerWidth + 1;
  }).map(function (s) { return s.id; });
  var out = document.createElement("pre");
  out.id = "layout";
  out.textContent = "VIEW=" + window.innerWidth + " PAGE=" + root.scrollWidth + " TALLEST_ROW=" +
    Math.round(tallest) + " TABLES=" + document.querySelectorAll("table.tbl").length + " WIDE=" + wide.join(",");
  document.body.appendChild(out);
});
</script>
"""


def _layout(tmp_path: Path, doc: str, name: str = "layout.html") -> dict[str, str]:
    probed = tmp_path / name
    probed.write_text(doc.replace("</body>", LAYOUT_PROBE + "</body>"))
    res = _chromium(tmp_path, "--window-size=1400,1000", "--dump-dom", probed.as_uri())
    match = re.search(r"VIEW=(\d+) PAGE=(\d+) TALLEST_ROW=(\d+) TABLES=(\d+) WIDE=([\w,-]*)", res.stdout)
    assert match, f"the layout probe did not run: rc={res.returncode}\n{res.stderr[-2000:]}"
    return dict(zip(("view", "page", "tallest_row", "tables", "wide"), match.groups()))


def test_every_table_fits_a_1400_px_window(page, tmp_path):
    got = _layout(tmp_path, page.read_text())
    assert int(got["view"]) == 1400 and int(got["tables"]) >= 8
    assert int(got["page"]) <= 1400, f"the page scrolls sideways: {got}"       # wide tables scroll in their box
    assert got["wide"] == "", f"sections wider than the window: {got}"
    assert int(got["tallest_row"]) <= 120, f"a table row is too tall (a note column that does not wrap?): {got}"


def test_the_layout_probe_detects_a_page_wider_than_the_window(page, tmp_path):
    wide = '<section id="wide"><table style="width:3000px"><tr><td>x</td></tr></table></section></main>'
    got = _layout(tmp_path, page.read_text().replace("</main>", wide, 1), "wide.html")
    assert int(got["page"]) > 1400 and "wide" in got["wide"]
