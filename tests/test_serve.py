"""``zoo serve``: the JSON API (through FastAPI's TestClient and a real uvicorn process), its limits and
errors, a bounded load test, the web page in headless Chromium, and a clean shutdown.

Served: a tiny ``tfidf_fp`` run and an ensemble of it with ``structure_match`` (chemical names parsed by
one long-lived OPSIN process), trained once per module on the tiny data (``tests/tiny.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from zoo.cli import main

FP_TINY = ["text_encoder.svd_dim=16", "text_encoder.hidden_dim=32", "molecule_encoder.hidden_dim=32",
           "molecule_encoder.n_bits=256", "embed_dim=32", "train.batch_size=16", "train.lr=0.003",
           "train.holdout_fraction=0.15", "train.eval_batch_size=64", "train.warmup_epochs=1", "train.epochs=4"]
QUERY = "The molecule is a pyridine derivative carrying a nitro substituent attached directly to the ring."
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``(root, data_dir)``: ``root/fp`` a tiny tfidf_fp run, ``root/ens`` it fused with structure_match."""
    from tiny import run_tiny, write_tiny_chebi

    root = tmp_path_factory.mktemp("serve")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZOO_CACHE_DIR", str(root / "cache"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        data = write_tiny_chebi(root / "chebi")
        run_tiny(data, root / "fp", composition="tfidf_fp", base=FP_TINY)
        assert main(["ensemble", str(root / "fp"), "--scorer", "structure_match", "--data-dir", str(data),
                     "--out", str(root / "ens")]) == 0
    return root, data


@pytest.fixture(scope="module")
def service(runs):
    """Both runs loaded by one :class:`zoo.serve.Service`, with one long-lived OPSIN for the module."""
    from zoo.opsin import LongLivedOpsin, long_lived_opsin
    from zoo.serve import Service

    root, data = runs
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZOO_CACHE_DIR", str(root / "cache"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        with long_lived_opsin(LongLivedOpsin(timeout=10.0)):
            yield Service.load([root / "fp", root / "ens"], data_dir=str(data), log=lambda _m: None)


@pytest.fixture(scope="module")
def client(service):
    from fastapi.testclient import TestClient

    from zoo.webapp import create_app

    with TestClient(create_app(service), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def test_pairs(runs):
    from zoo.plugins.tasks.chebi20 import load_chebi20

    _, data = runs
    return load_chebi20(data).test


def post(client, **body):
    return client.post("/api/v1/search", json=body)


# -- the API through the ASGI test client ---------------------------------------------------------------
def test_text_query_ranks_molecules_like_zoo_search(client, service):
    response = post(client, query=QUERY, k=5)
    assert response.status_code == 200
    result = response.json()
    hits = result["results"]
    assert result["model"] == "fp" and result["target"] == "molecules" and len(hits) == 5
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5] and all(a["score"] >= b["score"] for a, b in zip(hits, hits[1:]))
    assert all(h["description"].startswith("The molecule is") for h in hits if int(h["cid"]) >= 1000)  # described ones
    direct = service.models["fp"].searcher.text(QUERY, 5)["results"]  # the same searcher `zoo search` uses
    assert [(h["cid"], h["score"]) for h in hits] == [(h["cid"], pytest.approx(h["score"], abs=1e-6)) for h in direct]
    assert "names" not in result or result["names"] == []  # tfidf_fp reads no names: not parsed unless asked
    assert "svg" not in hits[0]
    drawn = post(client, query=QUERY, k=2, depict=True).json()["results"]
    assert drawn[0]["svg"].startswith('<svg class="mol"') and "<path" in drawn[0]["svg"]


def test_smiles_query_ranks_descriptions(client):
    result = post(client, smiles="c1cc(ccn1)[N+](=O)[O-]", k=3).json()
    assert result["target"] == "descriptions" and len(result["results"]) == 3
    assert all(h["description"].startswith("The molecule is") for h in result["results"])


def test_ensemble_hits_carry_each_member_and_the_query_names(client):
    result = post(client, query=QUERY, k=4, model="ens").json()
    assert result["model"] == "ens" and result["names_parsed"] is True
    names = {n["text"]: n for n in result["names"]}
    assert "pyridine" in names and names["pyridine"]["smiles"] == "c1ccncc1"
    n = names["pyridine"]
    assert QUERY[n["start"]:n["end"]] == "pyridine"
    for hit in result["results"]:
        assert set(hit["contributions"]) == {"fp", "structure_match"}
        assert sum(hit["contributions"].values()) == pytest.approx(hit["score"], abs=1e-4)
    described = post(client, smiles="CCO", model="ens", k=2).json()["results"]
    assert len(described) == 2 and set(described[0]["contributions"]) == {"fp", "structure_match"}


def test_models_health_and_openapi_docs(client, runs):
    models = client.get("/api/v1/models").json()
    assert models["default"] == "fp" and [m["name"] for m in models["models"]] == ["fp", "ens"]
    fp, ens = models["models"]
    recorded = json.loads((runs[0] / "fp" / "results.json").read_text())
    assert fp["composition"] == "tfidf_fp" and fp["spec_hash"] == recorded["spec_hash"] and fp["kind"] == "run"
    assert fp["test_metrics"]["all"]["text_to_molecule"]["mrr"] == pytest.approx(recorded["scores"]["all"]["text_to_molecule"]["mrr"])
    assert ens["kind"] == "ensemble" and [m["label"] for m in ens["members"]] == ["fp", "structure_match"] and ens["uses_names"]
    health = client.get("/api/v1/health").json()
    assert health["status"] == "ok" and health["models"] == ["fp", "ens"] and health["limits"]["max_k"] == 100
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert "/api/v1/search" in client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("body, status, message", [
    ({"query": ""}, 422, "query: empty query"),
    ({"query": "   "}, 422, "query: empty query"),
    ({"smiles": "C1CC"}, 422, "smiles 'C1CC': cannot read this molecule"),
    ({"smiles": "not a smiles at all"}, 422, "cannot read this molecule"),
    ({"query": "benzene", "k": 0}, 422, "k must be between 1 and 100 (got 0)"),
    ({"query": "benzene", "k": 101}, 422, "k must be between 1 and 100 (got 101)"),
    ({"query": "benzene", "k": "ten"}, 422, "k: Input should be a valid integer"),
    ({"query": "x" * 4001}, 413, "query: 4,001 characters, over the limit of 4,000"),
    ({"smiles": "C" * 4001}, 413, "smiles: 4,001 characters"),
    ({"query": "benzene", "model": "fq"}, 404, "model 'fq' is not served (served: fp, ens); did you mean fp?"),
    ({"query": "benzene", "smiles": "CCO"}, 422, "give exactly one of"),
    ({}, 422, "give exactly one of"),
    ({"query": "benzene", "colour": "red"}, 422, "colour: Extra inputs are not permitted"),
])
def test_bad_requests_get_one_line_json_errors(client, body, status, message):
    response = post(client, **body)
    assert response.status_code == status
    error = response.json()
    assert error["status"] == status and message in error["error"], error
    assert "\n" not in error["error"] and "Traceback" not in response.text


def test_malformed_bodies_and_unknown_paths(client):
    bad = client.post("/api/v1/search", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 422 and bad.json()["error"] == "request body: not valid JSON"
    huge = client.post("/api/v1/search", content=b"x" * 100_000, headers={"content-type": "application/json"})
    assert huge.status_code == 413 and "request body over the limit" in huge.json()["error"]
    assert client.get("/api/v1/search").status_code == 405
    for path in ("/nothing", "/static/../pyproject.toml", "/static/%2e%2e%2fpyproject.toml", "/static/..%2F..%2Fzoo%2Fcli.py",
                 "/static/index.html", "/etc/passwd", "/api/v1/molecules/..%2F..%2Fetc%2Fpasswd", "/api/v2/search"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert set(response.json()) == {"error", "status"} and "root:" not in response.text and "import" not in response.text
    assert client.get("/api/v1/depict", params={"smiles": "C1CC"}).status_code == 422
    svg = client.get("/api/v1/depict", params={"smiles": "CCO"})
    assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml" and "<svg" in svg.text


def test_a_bug_is_a_500_json_line_without_traceback(client, service, monkeypatch, caplog):
    def broken(**_kwargs):
        raise ValueError("something internal\nwith a second line")

    monkeypatch.setattr(service, "search", broken)
    response = post(client, query="benzene")
    assert response.status_code == 500
    assert response.json() == {"error": "internal error (ValueError); the server log has the details", "status": 500}
    assert "Traceback" not in response.text and "something internal" not in response.text
    assert any("internal error" in r.getMessage() for r in caplog.records)  # the details go to the server log


def test_molecule_view_has_neighbours_and_descriptions(client, test_pairs):
    cid = test_pairs[0].cid
    view = client.get(f"/api/v1/molecules/{cid}", params={"k": 5}).json()
    assert view["cid"] == cid and view["description"] == test_pairs[0].description and "<svg" in view["svg"]
    assert len(view["neighbours"]) == 5 and cid not in [n["cid"] for n in view["neighbours"]]
    assert [n["rank"] for n in view["neighbours"]] == [1, 2, 3, 4, 5] and all("<svg" in n["svg"] for n in view["neighbours"])
    assert len(view["descriptions"]) == 5
    fused = client.get(f"/api/v1/molecules/{cid}", params={"model": "ens", "k": 3}).json()
    assert len(fused["neighbours"]) == 3 and "contributions" in fused["descriptions"][0]
    missing = client.get("/api/v1/molecules/no-such-cid")
    assert missing.status_code == 404 and "is not in the gallery" in missing.json()["error"]


def test_a_hanging_name_parse_times_out_and_the_query_is_answered_without_names(client, monkeypatch):
    import zoo.opsin
    from zoo.opsin import LongLivedOpsin

    hanging = LongLivedOpsin(timeout=0.5, command=[sys.executable, "-c", "import time; time.sleep(30)"])
    monkeypatch.setattr(zoo.opsin, "_LONG_LIVED", hanging)
    try:
        started = time.perf_counter()
        result = post(client, query="The molecule is a zzyzx-substituted quuxane derivative.", model="ens", k=3)
        assert result.status_code == 200 and time.perf_counter() - started < 10
        body = result.json()
        assert body["names"] == [] and body["names_parsed"] is False and len(body["results"]) == 3
        assert any("timed out after 0.5 s: answered without name evidence" in n for n in body["notes"])
    finally:
        hanging.close()


def test_requests_write_no_file(client, runs, test_pairs):
    root, _ = runs

    def snapshot():
        return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}

    before = snapshot()
    post(client, query=test_pairs[1].description + " unseen-word-xylofoo", model="ens", names=True)
    post(client, smiles="CCCCCCCCO", model="ens")
    client.get(f"/api/v1/molecules/{test_pairs[2].cid}")
    assert snapshot() == before


def test_exposed_host_is_warned_about(service, monkeypatch, capsys):
    import uvicorn

    from zoo.webapp import serve

    class FakeServer:
        def __init__(self, config):
            self.config, self.started = config, True

        def run(self):
            pass

    monkeypatch.setattr(uvicorn, "Server", FakeServer)
    serve(service, "127.0.0.1", 8123)
    assert "warning" not in capsys.readouterr().err
    serve(service, "0.0.0.0", 8123)
    assert "--host 0.0.0.0 exposes the server beyond this machine" in capsys.readouterr().err


def test_serve_refuses_a_damaged_run_before_binding(runs, tmp_path, capsys):
    root, data = runs
    copy = tmp_path / "fp"
    shutil.copytree(root / "fp", copy)
    checkpoint = copy / "checkpoint" / "best.safetensors"
    raw = bytearray(checkpoint.read_bytes())
    raw[-1] ^= 0xFF
    checkpoint.write_bytes(bytes(raw))
    port = free_port()
    assert main(["serve", str(copy), "--port", str(port), "--data-dir", str(data)]) == 2
    err = capsys.readouterr().err
    assert "zoo: error:" in err and len([line for line in err.splitlines() if "error" in line]) == 1
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert main(["serve", str(tmp_path / "missing")]) == 2 and "run folder not found" in capsys.readouterr().err


def test_long_lived_opsin_parses_like_a_jvm_per_batch_and_writes_nothing(tmp_path):
    from zoo.opsin import LongLivedOpsin, ParseCache, canonical_smiles, long_lived_opsin, parse_names, run_opsin

    names = ["ethanol", "4-hydroxybenzoic acid", "not a chemical", "pyridine", "(2S)-2-aminopropanoic acid"]
    expected = {n: canonical_smiles(s) for n, s in zip(names, run_opsin(names))}  # one JVM for the batch
    cache = ParseCache(tmp_path / "opsin")
    cache.put({"unused": "C"})
    before = sorted(p.stat().st_mtime_ns for p in tmp_path.rglob("*"))
    with long_lived_opsin(LongLivedOpsin(timeout=10, cache=cache)) as opsin:
        process = opsin._process
        assert parse_names(names) == expected
        assert parse_names(["pyridine", "benzene"]) == {"pyridine": expected["pyridine"], "benzene": "c1ccccc1"}
        assert opsin._process is process and process.poll() is None  # one JVM for every query
    assert process.poll() is not None  # stopped with the block
    assert sorted(p.stat().st_mtime_ns for p in tmp_path.rglob("*")) == before  # new parses stay in memory


def test_a_library_index_is_served(runs, tmp_path):
    from zoo.errors import ServeError
    from zoo.serve import Service

    root, data = runs
    run = tmp_path / "fp"
    shutil.copytree(root / "fp", run)
    (tmp_path / "lib.smi").write_text("CCO ethanol\nc1ccncc1 pyridine\nc1ccccc1O phenol\nCC(=O)O acetic\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZOO_CACHE_DIR", str(root / "cache"))
        assert main(["index", str(run), "--molecules", str(tmp_path / "lib.smi"), "--no-progress", "--device", "cpu"]) == 0
        service = Service.load([run], index="lib", data_dir=str(data), log=lambda _m: None)
    result = service.search(query="The molecule is a pyridine derivative.", k=3)
    assert result["target"] == "molecules" and "library index" in result["searched"] and len(result["results"]) == 3
    assert {h["cid"] for h in service.search(smiles="CCO", k=4)["results"]} == {"ethanol", "pyridine", "phenol", "acetic"}
    with pytest.raises(ServeError, match="library index"):
        service.molecule("ethanol")


# -- a real uvicorn process --------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(base: str, path: str, body: dict | None = None, timeout: float = 60) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def start_server(runs, *names: str, log_name: str = "server.log") -> tuple[str, subprocess.Popen, Path]:
    """``zoo serve`` of ``root/NAME`` folders as a process on a free 127.0.0.1 port, once it answers."""
    root, data = runs
    port = free_port()
    env = {**os.environ, "ZOO_CACHE_DIR": str(root / "cache"), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    log_path = root / log_name
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "zoo.cli", "serve", *(str(root / n) for n in names),
                                    "--port", str(port), "--data-dir", str(data)], stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            if http(base, "/api/v1/health", timeout=5)[0] == 200:
                break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"zoo serve did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.5)
    return base, process, log_path


@pytest.fixture(scope="module")
def server(runs):
    """``zoo serve fp ens``: ``(base_url, process, log_path)``."""
    base, process, log_path = start_server(runs, "fp", "ens")
    yield base, process, log_path
    if process.poll() is None:
        process.kill()
        process.wait()


def test_real_server_answers_like_the_test_client(server, client):
    base, _, log_path = server
    status, result = http(base, "/api/v1/search", {"query": QUERY, "k": 5, "model": "ens"})
    assert status == 200
    local = post(client, query=QUERY, k=5, model="ens").json()
    assert [h["cid"] for h in result["results"]] == [h["cid"] for h in local["results"]]
    assert http(base, "/api/v1/search", {"smiles": "C1CC"})[0] == 422
    assert "127.0.0.1" in log_path.read_text() and "warning" not in log_path.read_text()
    with urllib.request.urlopen(base + "/") as page:
        html = page.read().decode()
    assert "<textarea id=\"query\"" in html and "http" not in html.replace("http-equiv", "")


def load_requests(test_pairs) -> list[dict]:
    """Mixed valid and invalid requests (descriptions, SMILES, both models; empty, unreadable, too long, bad k, unknown model)."""
    valid = [{"query": p.description, "k": 10} for p in test_pairs] + \
        [{"query": p.description, "k": 5, "model": "ens"} for p in test_pairs[:6]] + \
        [{"smiles": p.smiles, "k": 5} for p in test_pairs[:6]] + [{"smiles": "CCO", "k": 3, "model": "ens"}]
    invalid = [{"query": ""}, {"smiles": "C1CC"}, {"query": "benzene", "k": 0}, {"query": "x" * 5000},
               {"query": "benzene", "model": "nope"}, {"query": "benzene", "k": "many"}, {"smiles": "CCO", "query": "ethanol"}]
    return valid + invalid


def comparable(status: int, body: dict) -> tuple:
    """A response without its timings."""
    if status != 200:
        return status, body["error"]
    return status, [(h["cid"], round(h["score"], 5)) for h in body["results"]], tuple(n["text"] for n in body.get("names", []))


def test_load_2000_requests_from_16_clients_no_5xx_and_the_same_answers(server, test_pairs):
    base, _, _ = server
    assert base.startswith("http://127.0.0.1:")  # never beyond this machine
    requests = load_requests(test_pairs)
    single = [comparable(*http(base, "/api/v1/search", body)) for body in requests]
    assert {s[0] for s in single} == {200, 404, 413, 422}
    plan = [i % len(requests) for i in range(2000)]

    def one(i: int) -> tuple:
        return i, comparable(*http(base, "/api/v1/search", requests[i]))

    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, plan))
    elapsed = time.perf_counter() - started
    assert len(answers) == 2000
    assert [a for a in answers if a[1][0] >= 500] == []
    mismatched = [i for i, answer in answers if answer != single[i]]
    assert mismatched == [], f"{len(mismatched)} answers differ from the single client's, e.g. {requests[mismatched[0]]}"
    print(f"load: 2000 requests, 16 clients, {elapsed:.1f} s ({2000 / elapsed:.0f} requests/s)")


# -- the web page in headless Chromium ------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("headless Chromium and chromedriver are not installed (Debian: apt-get install chromium "
                    "chromium-driver; .ci/run installs them)")
    pytest.importorskip("selenium", reason="selenium (the `dev` extra) is not installed")
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1400",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium') / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def _wait(driver, condition, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _search(driver, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.ID, "query")
    box.clear()
    driver.execute_script("document.getElementById('results').replaceChildren()")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)  # the keyboard alone: Enter searches


def test_page_finds_the_true_molecule_of_a_test_description(server, browser, client, test_pairs):
    from selenium.webdriver.common.by import By

    base, _, _ = server
    # a test description whose molecule the tiny model ranks in its top 10 (the page shows 10 by default)
    pair = next(p for p in test_pairs if p.cid in [h["cid"] for h in post(client, query=p.description, k=10).json()["results"]])
    browser.get(base + "/")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"))
    assert browser.find_element(By.ID, "model").get_attribute("value") == "fp"
    _search(browser, pair.description)
    assert "a description" in browser.find_element(By.ID, "detected").text
    cards = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#results li.card.molecule"))
    assert len(cards) == 10
    drawn = {c.get_attribute("data-cid"): c for c in cards if c.find_elements(By.CSS_SELECTOR, "svg.mol path")}
    assert pair.cid in drawn, f"true molecule {pair.cid} not among the drawn results {list(drawn)}"
    box = browser.execute_script("return arguments[0].querySelector('svg.mol').getBoundingClientRect().width", drawn[pair.cid])
    assert box > 100
    assert "#1" in cards[0].text and "score" in cards[0].text
    assert browser.execute_script(  # nothing loaded from anywhere but this server
        "return performance.getEntriesByType('resource').every(r => r.name.startsWith(location.origin))")
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []


def test_page_ensemble_highlights_names_and_opens_a_molecule_view(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    base, _, _ = server
    browser.get(base + "/")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"))
    Select(browser.find_element(By.ID, "model")).select_by_value("ens")
    _search(browser, QUERY)
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#results li.card.molecule"))
    marks = [m.text for m in browser.find_elements(By.CSS_SELECTOR, "#names mark.chem-name")]
    assert "pyridine" in marks
    assert "structure_match" in browser.find_element(By.CSS_SELECTOR, "#results li.card .contrib").text
    # keyboard: Tab to the first card's link, Enter opens the molecule view with its neighbours, Esc closes it
    link = browser.find_element(By.CSS_SELECTOR, "#results li.card a.view")
    browser.execute_script("arguments[0].focus()", link)
    link.send_keys(Keys.ENTER)
    _wait(browser, lambda d: d.find_element(By.ID, "molecule-view").is_displayed()
          and d.find_elements(By.CSS_SELECTOR, "#molecule-view li.card.molecule svg.mol"))
    assert browser.switch_to.active_element.get_attribute("id") == "molecule-title"
    browser.switch_to.active_element.send_keys(Keys.ESCAPE)
    _wait(browser, lambda d: not d.find_element(By.ID, "molecule-view").is_displayed())


def test_page_smiles_query_shows_description_cards_and_an_invalid_one_the_error(server, browser):
    from selenium.webdriver.common.by import By

    base, _, _ = server
    browser.get(base + "/")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"))
    _search(browser, "c1cc(ccn1)[N+](=O)[O-]")
    assert "a SMILES" in browser.find_element(By.ID, "detected").text
    cards = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#results li.card.description"))
    assert len(cards) == 10 and all("The molecule is" in c.text for c in cards)
    assert not browser.find_element(By.ID, "error").is_displayed()
    _search(browser, "C1CC")
    error = _wait(browser, lambda d: d.find_element(By.ID, "error") if d.find_element(By.ID, "error").is_displayed() else None)
    assert "cannot read this molecule" in error.text
    assert browser.find_elements(By.CSS_SELECTOR, "#results li.card") == []


# -- shutdown ---------------------------------------------------------------------------------------
def test_sigterm_stops_the_server_cleanly(server):
    base, process, log_path = server
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143
    log = log_path.read_text()
    assert "Traceback" not in log and "The server stopped" in log
    with pytest.raises(OSError):
        urllib.request.urlopen(base + "/api/v1/health", timeout=2)


def test_ctrl_c_stops_the_server_cleanly(runs):
    base, process, log_path = start_server(runs, "fp", log_name="server-int.log")
    try:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
    finally:
        if process.poll() is None:
            process.kill()
    log = log_path.read_text()
    assert "Traceback" not in log and "interrupted. The server stopped" in log
