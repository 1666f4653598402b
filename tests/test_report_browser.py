"""The report in a real browser: headless Chromium opens a small report (built here from synthetic runs),
every table and every image must render (no broken image: naturalWidth > 0), with no console message at
all (the page has no script of its own, so any message is an error the browser reports), and a screenshot
is saved under the test's temp folder (its path is printed, and given as a warning in the summary).

Skipped, with a message, only where no Chromium is installed (Debian: ``apt-get install chromium``;
``.ci/run`` installs it)."""

import json
import os
import re
import shutil
import subprocess
import warnings

import pytest

from tests.report_fixture import build_small_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
CHROMIUM = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium; "
                                                          ".ci/run installs it): the report's browser check cannot run")

# Injected into a copy of the page only: after the load event, write what rendered into the DOM.
CHECK = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.map.call(document.images, function (i) {
    return {alt: i.alt, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight, shown: i.getBoundingClientRect().width,
            shown_h: i.getBoundingClientRect().height};
  });
  var tables = Array.prototype.map.call(document.querySelectorAll('table'), function (t) {
    return {id: t.id, rows: t.rows.length, w: t.getBoundingClientRect().width, h: t.getBoundingClientRect().height};
  });
  var oneSeed = Array.prototype.filter.call(document.querySelectorAll('td'), function (td) {
    var n = td.querySelector('sub.n');
    return n && n.textContent === 'n=1';
  }).map(function (td) { return td.textContent; });
  var prov = document.getElementById('provenance');
  var pre = document.createElement('pre');
  pre.id = 'stbench-check';
  pre.textContent = JSON.stringify({imgs: imgs, tables: tables, height: document.documentElement.scrollHeight,
                                    width: document.documentElement.clientWidth, one_seed: oneSeed,
                                    provenance: prov ? prov.innerText : ''});
  document.body.appendChild(pre);
});
</script>"""


def _chromium(tmp_path, *args, timeout=120):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "LANG": "C.UTF-8"})


def _console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def _probe(tmp_path, page: str, name="probe.html"):
    """What Chromium rendered of ``page`` (images, tables, height) and the console messages it logged."""
    import html

    probe = tmp_path / name
    probe.write_text(page.replace("</head>", CHECK + "\n</head>", 1))
    res = _chromium(tmp_path, "--window-size=1400,900", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    assert res.returncode == 0, res.stderr[-3000:]
    m = re.search(r'<pre id="stbench-check">(.*?)</pre>', res.stdout, re.S)
    assert m, "the page did not finish loading in Chromium:\n" + res.stdout[-2000:] + res.stderr[-2000:]
    return json.loads(html.unescape(m.group(1))), _console(res.stderr)


def _broken(seen) -> list[str]:
    return [i["alt"] for i in seen["imgs"] if not (i["complete"] and i["w"] > 0 and i["h"] > 0 and i["shown"] > 0)]


def test_the_check_sees_a_broken_image_and_a_console_error(tmp_path):
    """Negative control: the same probe on a page with a broken image and a script error."""
    seen, console = _probe(tmp_path, '<html><head></head><body><table><tr><td>a</td></tr></table>'
                                     '<img alt="bad" src="data:image/png;base64,AAAA"><script>nosuchfn();</script></body></html>')
    assert _broken(seen) == ["bad"] and any("nosuchfn" in line for line in console)


def test_report_renders_in_headless_chromium(tmp_path):
    report = build_small_report(tmp_path / "run")
    page = report.read_text()
    n_img = len(re.findall(r"<img ", page))
    n_table = len(re.findall(r"<table[ >]", page))
    seen, console = _probe(tmp_path, page)
    assert len(seen["imgs"]) == n_img >= 4
    assert not _broken(seen), f"broken or invisible images: {_broken(seen)}"
    assert len(seen["tables"]) == n_table
    assert all(t["rows"] >= (1 if t["id"].startswith("prov-") else 2) and t["w"] > 0 and t["h"] > 0 for t in seen["tables"]), seen["tables"]
    ids = {t["id"] for t in seen["tables"]}
    assert {"t1", "t1cmp", "table3", "costtable", "costtotals", "summarytable", "prov-code", "prov-pkg", "prov-hw",
            "prov-data", "problemtable"} <= ids
    assert console == [], console
    # what a reader needs: provenance (commit, config hash, versions, hardware), the summary figure shown, no
    # '±0.000' from one seed, and every figure at a readable size (not shrunk below 600 px or half its width)
    for needle in ("git commit", "resolved config sha256", "command line", "torch", "scanpy", "snakemake", "CPU"):
        assert needle in seen["provenance"], needle
    summary = [i for i in seen["imgs"] if i["alt"] == "summary.png"]
    assert summary and summary[0]["shown"] >= 600 and summary[0]["shown_h"] >= 150, summary
    assert seen["one_seed"] and not any("±" in t for t in seen["one_seed"]), seen["one_seed"]
    for i in seen["imgs"]:
        assert i["shown"] >= min(600, i["w"]) and i["shown"] >= 0.5 * min(i["w"], seen["width"]), i

    # the page itself, unmodified: no console message, and a full-page screenshot
    shot = tmp_path / "report.png"
    height = min(max(int(seen["height"]) + 40, 800), 16000)
    res = _chromium(tmp_path, f"--window-size=1400,{height}", f"--screenshot={shot}", report.as_uri())
    assert res.returncode == 0, res.stderr[-3000:]
    assert _console(res.stderr) == [], _console(res.stderr)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    print(f"\nreport screenshot: {shot}")
    # a warning reaches the summary of a quiet (-q) and parallel (-n) run, where printed output does not
    warnings.warn(f"report screenshot (headless Chromium): {shot}", UserWarning, stacklevel=1)
