"""report.html: self-contained (data URIs, inline script, no network), written by inspect, denoise,
demo and evaluate, and rendered by headless Chromium with its images, table and script intact."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser

import imageio.v3 as iio
import numpy as np
import pytest

from burstkpn.cli import main
from burstkpn.report import Report, render
from burstkpn.viz import image_png
from test_inspect import PNG


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def check_self_contained(text: str) -> list[tuple[str, dict]]:
    """Parse the page; every image is an embedded PNG, nothing refers outside it."""
    parser = Tags()
    parser.feed(text)
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    for tag, attrs in parser.tags:
        assert "href" not in attrs and not (tag == "script" and "src" in attrs), (tag, attrs)
        if tag == "img" and "src" in attrs:
            assert attrs["src"].startswith("data:image/png;base64,")
            assert base64.b64decode(attrs["src"].split(",", 1)[1])[:8] == PNG
    assert not re.search(r"(src|href)=\"(https?:|//)", text) and "@import" not in text
    return parser.tags


def sample_report() -> Report:
    gray = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    return Report("a <test> & report", images={"before": image_png(gray * 0.5), "after": image_png(gray)},
                  figures=[("a figure", image_png(gray))], table=[{"method": "kpn", "PSNR (dB)": 31.234, "SSIM": 0.9}],
                  table_caption="caption", facts={"gain": 2})


def test_render_is_self_contained_and_escaped():
    text = render(sample_report())
    tags = check_self_contained(text)
    assert "a &lt;test&gt; &amp; report" in text and "<test>" not in text
    assert sum(t == "img" for t, _ in tags) == 5  # 2 sources, 2 slider layers, 1 figure
    assert ("input", {"id": "slider", "type": "range", "min": "0", "max": "100", "value": "50",
                      "aria-label": "comparison slider"}) in tags
    assert "<td>31.23</td>" in text


def test_every_command_writes_a_report(random_weights, testset_path, tmp_path):
    from burstkpn.camera import linear_to_srgb8
    from burstkpn.testset import load_testset

    assert main(["demo", "-o", str(tmp_path / "demo"), "--size", "48", "--methods", "reference,average",
                 "--model", str(random_weights)]) == 0
    assert main(["evaluate", "--testset", str(testset_path), "--methods", "reference,average", "--model",
                 str(random_weights), "--out", str(tmp_path / "ev"), "--quiet"]) == 0
    folder = tmp_path / "burst"
    folder.mkdir()
    for i, frame in enumerate(load_testset(testset_path).noisy[0]):
        iio.imwrite(folder / f"f{i}.png", linear_to_srgb8(frame.clip(0, 1)))
    assert main(["denoise", str(folder), "-o", str(tmp_path / "dn" / "out.png"), "--model", str(random_weights),
                 "--report", "--quiet"]) == 0
    for path in (tmp_path / "demo" / "report.html", tmp_path / "ev" / "report.html", tmp_path / "dn" / "out.report.html"):
        text = path.read_text()
        check_self_contained(text)
        assert 'id="compare"' in text and "Kernels of every frame" in text, path
    assert "<th>gain</th>" in (tmp_path / "ev" / "report.html").read_text()


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no headless Chromium here (Debian: apt-get install chromium; .ci/run installs it when it can)")


@pytest.mark.slow
def test_report_renders_in_headless_chromium(random_weights, testset_path, tmp_path):
    browser = chromium()
    out = tmp_path / "insp"
    assert main(["inspect", str(testset_path), "--model", str(random_weights), "-o", str(out)]) == 0
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--enable-logging=stderr",
           "--dump-dom", (out / "report.html").as_uri()]
    run = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    dom = run.stdout
    assert run.returncode == 0, run.stderr[-2000:]
    assert 'data-ready="1"' in dom, "the page's script did not run to its end"
    assert 'data-images="ok"' in dom, re.findall(r'data-images="[^"]*"', dom) or "load handler never ran"
    assert re.search(r'id="img-before"[^>]*src="data:image/png', dom) or re.search(r'src="data:image/png[^"]*"[^>]*id="img-before"', dom)
    assert dom.count("<tr>") >= 4  # header + reference, average, model
    assert "Uncaught" not in run.stderr, run.stderr[-2000:]
