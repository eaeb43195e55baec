"""The page at GET / in a real headless browser (tests/browser.py): a user types a FASTA record, clicks
run, and sees the scan, the predicted residues, the contact map (or the note that the model has none)
and downloads the embeddings; what the page shows is checked against the API's own answers."""

import csv
import io
import json
import math
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from browser import chrome, free_port, start_server  # noqa: E402
from tiny_models import save_tiny  # noqa: E402

SEQUENCE = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQD"  # 46 residues: the tiny model's limit
FASTA = ">sp|P00001|TEST a test protein\n" + SEQUENCE[:30] + "\n" + SEQUENCE[30:] + "\n"
STANDARD = "ACDEFGHIKLMNPQRSTVWY"
RESIDUES = "ACDEFGHIKLMNPQRSTVWYXBZUO"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = save_tiny(tmp_path_factory.mktemp("mlm"), backbone="performer", task="mlm")
    port = free_port()
    process = start_server(str(folder), port, "--max-wait-ms", "0", "--log-level", "warning")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads):
    driver = chrome(downloads)
    try:
        yield driver
    finally:
        driver.quit()


def api(server, route, body):
    response = httpx.post(server + route, json=body, timeout=60)
    return response.status_code, response.json()


def submit(browser, server, text, *, expect="done", timeout=90):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    if not browser.current_url.startswith(server):
        browser.get(server + "/")
        WebDriverWait(browser, 30).until(lambda d: "layers" in d.find_element(By.ID, "model").text)
    box = browser.find_element(By.ID, "sequence")
    box.clear()
    box.send_keys(text)
    # Record every text the progress element shows during the run.
    browser.execute_script(
        "const box = document.getElementById('progress'); window.progressSeen = [];"
        "new MutationObserver(() => window.progressSeen.push(box.textContent))"
        ".observe(box, {subtree: true, childList: true, characterData: true});"
    )
    browser.find_element(By.ID, "run").click()
    WebDriverWait(browser, timeout).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error")
    )
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-state") == expect, (
        browser.find_element(By.ID, "error").text
    )


def cells(browser, panel):
    """The data the chart in ``panel`` draws, one dict per cell."""
    return browser.execute_script(
        "const chart = Chart.getChart(document.querySelector(arguments[0] + ' canvas'));"
        "return chart ? chart.data.datasets[0].data : null;",
        f"#{panel}",
    )


@pytest.fixture(scope="module")
def scanned(browser, server):
    """One run of the page on the FASTA record; the progress texts it showed."""
    submit(browser, server, FASTA)
    return browser.execute_script("return window.progressSeen;")


def test_the_heatmap_shows_the_api_scores(browser, server, scanned):
    shown = cells(browser, "heatmap")
    assert len(shown) == len(STANDARD) * len(SEQUENCE)
    mutations = [f"{w}{i}{a}" for i, w in enumerate(SEQUENCE, 1) for a in STANDARD]
    status, body = api(server, "/score", {"sequence": SEQUENCE, "mutations": mutations})
    assert status == 200
    truth = {s["mutation"]: s["score"] for s in body["scores"]}
    by_cell = {c["mutation"]: c for c in shown}
    assert set(by_cell) == set(truth)
    for mutation, score in truth.items():
        cell = by_cell[mutation]
        assert math.isclose(cell["v"], score, rel_tol=1e-9, abs_tol=1e-9), (mutation, cell["v"], score)
        assert cell["wt"] == (mutation[0] == mutation[-1]), mutation  # the wild type is marked
        assert cell["x"] == int(mutation[1:-1]) and STANDARD[cell["y"] - 1] == mutation[-1]
    limit = max(abs(s) for s in truth.values())
    legend = browser.execute_script("return document.querySelector('#heatmap .legend').dataset;")
    assert math.isclose(float(legend["max"]), limit) and math.isclose(float(legend["min"]), -limit)


def test_hovering_a_cell_shows_its_mutation_and_score(browser, server, scanned):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = browser.find_element(By.CSS_SELECTOR, "#heatmap canvas")
    for index in (3 * 20 + 5, 0):  # position 4, G (a mutant); position 1, A
        point = browser.execute_script(
            "const chart = Chart.getChart(arguments[0]);"
            "const cell = chart.getDatasetMeta(0).data[arguments[1]];"
            "const c = cell.getCenterPoint(); const box = arguments[0].getBoundingClientRect();"
            "return [c.x - box.width / 2, c.y - box.height / 2, chart.data.datasets[0].data[arguments[1]]];",
            canvas,
            index,
        )
        ActionChains(browser).move_to_element_with_offset(canvas, int(point[0]), int(point[1])).perform()
        time.sleep(0.2)
        tooltip = browser.find_element(By.ID, "tooltip")
        assert tooltip.is_displayed()
        raw = point[2]
        assert tooltip.text.startswith(raw["mutation"] + ":"), tooltip.text
        assert abs(float(tooltip.text.rsplit(" ", 1)[1]) - raw["v"]) < 6e-4, tooltip.text
    ActionChains(browser).move_to_element_with_offset(canvas, 0, 0).move_by_offset(0, -400).perform()


def test_the_scan_is_batched_and_shows_progress(browser, server, scanned):
    # 25 residue letters per position: 40 positions fit one request (1,024 mutations), so 46 take two.
    assert any("scanned 40 / 46 positions (1 request)" in text for text in scanned), scanned
    assert any("scanned 46 / 46 positions (2 requests)" in text for text in scanned), scanned
    from selenium.webdriver.common.by import By

    progress = browser.find_element(By.ID, "progress")
    assert progress.text.startswith("done: 46 positions")
    assert progress.get_attribute("data-done") == progress.get_attribute("data-total") == "46"


def test_the_probabilities_are_what_fill_mask_predicts(browser, server, scanned):
    shown = {(c["position"], c["residue"]): c for c in cells(browser, "probabilities")}
    assert len(shown) == len(STANDARD) * len(SEQUENCE)
    best = []
    for position in range(1, len(SEQUENCE) + 1):
        masked = SEQUENCE[: position - 1] + "_" + SEQUENCE[position:]
        status, body = api(server, "/fill-mask", {"sequence": masked, "top_k": len(RESIDUES)})
        assert status == 200
        predictions = {p["residue"]: p["probability"] for p in body["masks"][0]["predictions"]}
        best.append(body["masks"][0]["predictions"][0]["residue"])
        for residue in STANDARD:
            cell = shown[(position, residue)]
            assert abs(cell["v"] - predictions[residue]) < 1e-5, (position, residue)
            assert cell["wt"] == (residue == SEQUENCE[position - 1])
    from selenium.webdriver.common.by import By

    consensus = browser.find_element(By.CSS_SELECTOR, "#probabilities .consensus").text
    assert consensus.endswith(": " + "".join(best))


def test_the_contact_map_or_its_absence_is_shown(browser, server, scanned):
    from selenium.webdriver.common.by import By

    status, body = api(server, "/contacts", {"sequence": SEQUENCE})
    panel = browser.find_element(By.ID, "contacts")
    if status == 200:
        shown = cells(browser, "contacts")
        assert len(shown) == len(SEQUENCE) ** 2
        for cell in shown:
            assert math.isclose(
                cell["v"], body["contacts"][cell["i"][0] - 1][cell["j"][0] - 1], abs_tol=1e-12
            )
    else:
        assert status in (404, 405, 409), body
        assert panel.text == "this model has no contact predictor"


def test_the_embeddings_download_as_npy_and_csv(browser, server, scanned, downloads):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    status, body = api(server, "/embed", {"sequences": [SEQUENCE], "per_residue": True})
    assert status == 200
    truth = np.asarray(body["residue_embeddings"][0])
    assert truth.shape == (len(SEQUENCE), body["dim"])
    base = f"sp_P00001_TEST_embeddings_layer{body['layer']}"

    def fetch(suffix):
        path = downloads / (base + suffix)
        deadline = time.monotonic() + 20
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert path.exists(), sorted(p.name for p in downloads.iterdir())
        time.sleep(0.2)  # let the browser finish writing
        return path

    Select(browser.find_element(By.ID, "download-format")).select_by_value("npy")
    browser.find_element(By.ID, "download").click()
    array = np.load(fetch(".npy"), allow_pickle=False)
    assert array.dtype == np.float32 and array.shape == truth.shape
    np.testing.assert_array_equal(array, truth.astype(np.float32))  # the model's float32 values, exactly

    Select(browser.find_element(By.ID, "download-format")).select_by_value("csv")
    browser.find_element(By.ID, "download").click()
    rows = list(csv.reader(io.StringIO(fetch(".csv").read_text())))
    assert rows[0][:3] == ["position", "residue", "dim_0"] and len(rows) == len(SEQUENCE) + 1
    assert [r[1] for r in rows[1:]] == list(SEQUENCE)
    np.testing.assert_array_equal(np.array([[float(v) for v in r[2:]] for r in rows[1:]]), truth)


def test_a_screenshot_of_the_page(browser, server, scanned, tmp_path):
    path = tmp_path / "page.png"
    assert browser.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("MKTJAY", ["unknown residue 'J' at position 4"]),
        (">empty record\n", ["empty sequence"]),
        (SEQUENCE + "A", ["47 residues, over the limit of 46"]),
        ("MKT1AY", ["unknown residue '1' at position 4"]),
    ],
)
def test_bad_input_shows_the_server_message_and_nothing_else_breaks(browser, server, scanned, text, needles):
    from selenium.webdriver.common.by import By

    submit(browser, server, text, expect="error")
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed()
    sequence = "".join(text.split("\n")[1:]) if text.startswith(">") else text
    status, body = api(server, "/embed", {"sequences": [sequence], "per_residue": True})
    assert status == 422 and error.text == body["detail"]  # the server's own message
    for needle in needles:
        assert needle in error.text
    assert cells(browser, "heatmap") is None  # the last run's results are gone, not left stale
    assert browser.find_element(By.ID, "download").get_attribute("disabled")
    assert browser.find_element(By.ID, "run").is_enabled()
    # The next good run works and clears the message.
    submit(browser, server, SEQUENCE[:12])
    assert not browser.find_element(By.ID, "error").is_displayed()
    assert len(cells(browser, "heatmap")) == 12 * len(STANDARD)


def test_the_page_loaded_nothing_from_outside_and_raised_no_script_error(browser, server, scanned):
    names = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name);")
    assert names and all(name.startswith(server + "/") for name in names), names
    problems = [
        entry["message"]
        for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE"
        and "the server responded with a status of" not in entry["message"]  # the 4xx the tests provoke
    ]
    assert not problems, json.dumps(problems, indent=1)
