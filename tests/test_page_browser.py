"""The leaderboard page in a real browser (headless Chromium, when installed): it loads from
file://, its script runs without network, and clicking a column sorts the table."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from test_report import fake_result

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(BROWSER is None, reason="no Chromium on this machine (Debian: apt-get install chromium)")
def test_clicking_a_column_sorts_the_table_in_chromium(cli_runner, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    for i, (attack, asr) in enumerate((("badnet", 0.9), ("blended", 0.2), ("sig", 0.5))):
        (results / f"{i}.json").write_text(json.dumps(fake_result(attack, "none", 0, asr)))
    assert cli_runner(["report", "--results-dir", results, "--out", tmp_path / "out"]).exit_code == 0
    page = (tmp_path / "out" / "index.html").read_text()
    # click the "none" column of the ASR table twice (ascending), then let the page report the row order
    probe = ("<script>var h=document.querySelector('#metric1 th:nth-child(2)');h.click();"
             "document.title=Array.from(document.querySelectorAll('#metric1 tbody tr td:first-child'))"
             ".map(function(c){return c.textContent;}).join(',');</script></body>")
    (tmp_path / "out" / "probe.html").write_text(page.replace("</body>", probe))
    dom = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          f"file://{tmp_path / 'out' / 'probe.html'}"], capture_output=True, text=True, timeout=120).stdout
    assert "<title>blended,sig,badnet</title>" in dom, dom[:500]
