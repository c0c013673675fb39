"""``mltrack report --html`` rendered in a real headless Chromium (Debian's ``chromium`` package; CI installs it):
the page shows the table and every chart image, decoded, and a screenshot of it is not blank."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess

import pytest
from PIL import Image

from mltrack.cli.main import main
from test_report_charts import CHARTS, charted  # noqa: F401 - the fixture, shared

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium; "
                                                         ".ci/run installs it)")

# Appended to a copy of the page: after load, write what the browser made of it into the DOM that --dump-dom prints.
_PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images].map(i => `${i.id}:${i.complete}:${i.naturalWidth}x${i.naturalHeight}`
                                              + `:${i.getBoundingClientRect().width > 0}`);
  const table = document.getElementById("report");
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify({imgs, rows: table.rows.length, tableHeight: table.offsetHeight});
  document.body.appendChild(probe);
});
</script>"""


def _chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_html_page_renders_tables_and_images_in_chromium(charted, tmp_path, capsys):  # noqa: F811
    import json

    page = tmp_path / "report.html"
    assert main(["report", "--html", str(page)]) == 0
    capsys.readouterr()
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", _PROBE + "\n</body>"), encoding="utf-8")

    proc = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", probed.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    probe = json.loads(found.group(1).replace("&quot;", '"'))
    assert probe["rows"] == 5 and probe["tableHeight"] > 100  # header, three models, the total
    assert len(probe["imgs"]) == len(CHARTS)
    for entry in probe["imgs"]:
        name, complete, size, shown = entry.split(":")
        width, height = map(int, size.split("x"))
        assert name[len("chart-"):] in CHARTS and complete == "true" and shown == "true", entry
        assert width >= 600 and height >= 150, entry  # decoded by the browser
    for cell in ("<td>gpt-4o-mini</td>", "<td>my-local</td>", "<td>unpriced</td>", "<td>$0.00392</td>",
                 "<td>(all)</td>"):
        assert cell in dom, cell


def test_html_page_screenshot_is_not_blank(charted, tmp_path, capsys):  # noqa: F811
    page = tmp_path / "report.html"
    assert main(["report", "--html", str(page)]) == 0
    capsys.readouterr()
    shot = tmp_path / "shot.png"
    proc = _chromium(tmp_path, "--window-size=1200,1600", "--hide-scrollbars", f"--screenshot={shot}",
                     page.as_uri())
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    image = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    assert image.size == (1200, 1600)
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text, table rules and chart colours, not an empty page
    dark = sum(count for count, (r, g, b) in colours if r + g + b < 200)
    assert dark > 1000  # the table's and the headings' text
    # the charts' bar colours (tab10 blue #1f77b4 and its neighbours) are on screen
    assert sum(count for count, (r, g, b) in colours if b > 150 and r < 80 and 90 < g < 150) > 1000
