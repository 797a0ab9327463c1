"""``zoo report``: the HTML page's content, its errors, and how headless Chromium renders it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from zoo.cli import main

SAMPLES = 4
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def tiny_cache(tiny_run):
    """Use the tiny run's cache (featurized graphs, frozen text states) so nothing is recomputed."""
    data_dir, _, _ = tiny_run
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZOO_CACHE_DIR", str(data_dir.parent / "cache"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def report(tiny_run, tiny_cache, tmp_path_factory) -> tuple[Path, str]:
    """A report on the tiny run, built through the CLI against the tiny test gallery."""
    data_dir, run_dir, _ = tiny_run
    out = tmp_path_factory.mktemp("report") / "report.html"
    assert main(["report", str(run_dir), "--data-dir", str(data_dir), "--out", str(out), "--samples", str(SAMPLES),
                 "--gallery", "test", "--device", "cpu", "--no-progress"]) == 0
    return out, out.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def retrieval(tiny_run, tiny_cache):
    from zoo.plugins.tasks.chebi20 import load_chebi20
    from zoo.report import retrieve

    data_dir, run_dir, _ = tiny_run
    data = load_chebi20(data_dir)
    return data, retrieve(run_dir, "tiny", data, [0, 3], "all", "cpu", progress=False)


def test_report_shows_samples_with_top5_molecules_and_true_match(report):
    _, page = report
    samples = re.findall(r"<section class=sample .*?</section>", page, flags=re.S)
    assert len(samples) == SAMPLES
    for block in samples:
        assert len(re.findall(r"<figure class=truth><svg class=\"mol\"", block)) == 1
        hits = re.findall(r"<figure class=\"(hit[^\"]*)\" data-cid=\"[^\"]+\"><svg class=\"mol\"", block)
        assert len(hits) == 5
        rank = float(re.search(r"<div class=run-hits data-run=\"[^\"]+\" data-rank=\"([\d.]+)\">", block).group(1))
        # the true molecule is marked exactly when it is among the five, at its rank
        marked = [i for i, cls in enumerate(hits, 1) if cls == "hit true-match"]
        assert marked == ([rank] if rank <= 5 else [])
        truth_cid = re.search(r"id=\"sample-(\d+)\"", block).group(1)
        for cid in re.findall(r"<figure class=\"hit true-match\" data-cid=\"(\d+)\"", block):
            assert cid == truth_cid
    assert "hit true-match" in page, "with 16 candidates, some sampled true molecule should be in its top 5"


def test_report_has_leaderboard_curves_and_score_distribution(report, tiny_run):
    _, page = report
    _, _, results = tiny_run
    leaderboard = page[page.index('id=leaderboard'):page.index('id=curves')]
    assert leaderboard.count("<table class=leaderboard>") == 2  # galleries all and test
    assert "minilm · graph_transformer · adversarial · triplet" in leaderboard
    t2m = results["scores"]["test"]["text_to_molecule"]
    assert f"<td>{100 * t2m['mrr']:.1f}</td>" in leaderboard
    metrics = re.findall(r"<figure class=curve data-metric=\"([^\"]+)\"><svg class=\"plot\"", page)
    assert metrics[:2] == ["heldout_mrr", "heldout_hits@1"] and {"loss", "disc_acc"} <= set(metrics)
    assert len(re.findall(r"<figure class=scores><svg class=\"plot\"", page)) == 1


def test_report_is_self_contained(report):
    _, page = report
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for tag in ("<script", "<link", "<img", "<iframe", "@import", "@font-face"):
        assert tag not in page.lower()
    # URLs appear only as XML namespace names, never as something to load
    for attr, url in re.findall(r"([\w:-]+)=['\"](https?://[^'\"]*)", page):
        assert attr.startswith("xmlns"), (attr, url)
    assert "url(http" not in page


def test_report_metrics_match_the_harness(retrieval, tiny_run):
    """The report's own ranking reproduces the run's recorded text->molecule scores."""
    _, _, results = tiny_run
    _, r = retrieval
    recorded = results["scores"]["all"]["text_to_molecule"]
    for key, value in r.metrics().items():
        assert value == pytest.approx(recorded[key], abs=1e-6), key
    at_top = ((r.ranks.greater == 0) & (r.ranks.tied == 0)).double().mean().item()
    assert at_top == pytest.approx((r.true_scores > r.best_other + 1e-6).mean())
    for sample in r.samples:
        assert [h.score for h in sample.hits] == sorted((h.score for h in sample.hits), reverse=True)
        assert any(h.is_true for h in sample.hits) == (sample.rank <= 5)


def test_report_escapes_text(retrieval):
    from zoo.api import Pair
    from zoo.report import render_report

    data, r = retrieval
    evil = Pair(data.test[0].cid, data.test[0].smiles, "<script>alert('x')</script> & <b>bold</b>")
    page = render_report([r], [evil, data.test[3]], data, "all", seed=0)
    assert "<script>" not in page and "<b>bold" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}"], "run folder not found"),
        (["{run}", "{run}/"], "given more than once"),
        (["{run}", "--device", "tpu"], "is not a device"),
        (["{run}", "--samples", "0"], "--samples 0"),
        (["{run}", "--out", "{tmp}"], "is a folder"),
        (["{run}", "--data-dir", "{other_data}"], "was made on other data: its test.txt checksum differs"),
        (["{unfinished}"], "has no results.json"),
    ],
)
def test_report_bad_input_errors_and_writes_nothing(args, message, tiny_run, tiny_cache, tmp_path, capsys):
    from tiny import write_tiny_chebi

    data_dir, run_dir, _ = tiny_run
    other = write_tiny_chebi(tmp_path / "other")
    (other / "test.txt").write_text((other / "test.txt").read_text().replace("derivative", "compound", 1))
    (tmp_path / "unfinished").mkdir()
    out = tmp_path / "reports" / "report.html"
    out.parent.mkdir()
    out.write_text("previous report")
    fill = {"missing": tmp_path / "nope", "run": run_dir, "tmp": tmp_path, "other_data": other,
            "unfinished": tmp_path / "unfinished"}
    argv = ["report", *(a.format(**fill) for a in args)]
    if "--out" not in argv:
        argv += ["--out", str(out)]
    for option, value in (("--data-dir", str(data_dir)), ("--device", "cpu")):
        if option not in argv:
            argv += [option, value]
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert out.read_text() == "previous report"
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.html"]  # no temporary file left


def test_report_needs_a_run(capsys):
    from zoo.errors import RunError
    from zoo.report import build_report

    with pytest.raises(SystemExit):
        main(["report"])
    assert "RUN" in capsys.readouterr().err
    with pytest.raises(RunError, match="at least one run"):
        build_report([])


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                    reason="headless Chromium and chromedriver are not installed (Debian: apt-get install chromium "
                           "chromium-driver; .ci/run installs them)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    pytest.importorskip("selenium", reason="selenium (the `dev` extra) is not installed")
    from selenium import webdriver

    path, _ = report
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1600", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        driver.get(path.as_uri())
        assert driver.execute_script("return document.readyState") == "complete"
        assert driver.title.startswith("molzoo report")
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
        assert errors == []
        assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0  # nothing fetched
        # every molecule picture is laid out with its drawing's size and has drawn content
        boxes = driver.execute_script(
            "return [...document.querySelectorAll('figure.hit svg.mol, figure.truth svg.mol')].map(s => {"
            "const r = s.getBoundingClientRect(), b = s.getBBox();"
            "return [r.width, r.height, b.width, b.height, s.querySelectorAll('path').length]; })")
        assert len(boxes) == SAMPLES * 6
        for width, height, drawn_w, drawn_h, paths in boxes:
            assert width == pytest.approx(200) and height == pytest.approx(155)
            assert drawn_w > 20 and drawn_h > 20 and paths > 0
        border = driver.execute_script(
            "return getComputedStyle(document.querySelector('figure.hit.true-match')).borderTopColor")
        assert border == "rgb(44, 160, 44)"
        plots = driver.execute_script("return [...document.querySelectorAll('svg.plot')].map(s => s.getBBox().width)")
        assert len(plots) >= 3 and min(plots) > 100
        assert len(driver.get_screenshot_as_png()) > 10_000
        # the log check can fail: a page that loads a missing picture is reported
        broken = tmp_path / "broken.html"
        broken.write_text('<!DOCTYPE html><html><body><img src="missing.png"></body></html>')
        driver.get(broken.as_uri())
        assert any(e["level"] == "SEVERE" for e in driver.get_log("browser"))
    finally:
        driver.quit()


def test_report_names_runs_and_data_relative_to_where_it_ran(report, tiny_run):
    """The page names no absolute folder of the machine it was made on."""
    import os

    data_dir, run_dir, _ = tiny_run
    _, page = report
    assert f"<code>{run_dir}</code>" not in page and f"<code>{data_dir.resolve()}</code>" not in page
    assert f"<code>{os.path.relpath(run_dir)}</code>" in page
    assert f"<code>{os.path.relpath(data_dir)}</code>" in page
