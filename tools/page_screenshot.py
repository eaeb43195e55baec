"""Screenshot of the page ``favor serve`` answers GET / with, for docs/serving.md (docs/img/serve_page.png).

    python tools/page_screenshot.py [--model favor-protein-small] [--out docs/img/serve_page.png]

Starts ``favor serve MODEL`` on a free loopback port, opens the page in headless Chromium (Debian's
chromium + chromium-driver, driven by Selenium; nothing downloaded), pastes the first protein of 100-160
residues from the bundled test sample as a FASTA record, clicks run, waits for the scan and saves a
screenshot of the whole page.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from favor.data import read_fasta

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "src" / "favor" / "data" / "sample" / "test.fasta"


def example_record() -> tuple[str, str]:
    for record in read_fasta(SAMPLE):
        if 100 <= len(record.sequence) <= 160 and set(record.sequence) <= set("ACDEFGHIKLMNPQRSTVWY"):
            return record.name, record.sequence
    raise SystemExit(f"no protein of 100-160 standard residues in {SAMPLE}")


def serve(model: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "favor.cli",
        "serve",
        model,
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    server, url = subprocess.Popen(command), f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if server.poll() is not None or time.monotonic() > deadline:
            server.terminate()
            raise SystemExit("favor serve did not start")
        try:
            httpx.get(url + "/health", timeout=2)
            return server, url
        except httpx.TransportError:
            time.sleep(0.3)


def browser(width: int, height: int) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or ""
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={width},{height}")
    return webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=options)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="favor-protein-small")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "serve_page.png")
    parser.add_argument("--width", type=int, default=1300)
    args = parser.parse_args()
    name, sequence = example_record()
    server, url = serve(args.model)
    driver = browser(args.width, 1000)
    try:
        driver.get(url + "/")
        WebDriverWait(driver, 30).until(lambda d: "layers" in d.find_element(By.ID, "model").text)
        fasta = f">{name}\n" + "\n".join(sequence[i : i + 60] for i in range(0, len(sequence), 60))
        driver.find_element(By.ID, "sequence").send_keys(fasta)
        driver.find_element(By.ID, "run").click()
        WebDriverWait(driver, 600).until(
            lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error")
        )
        height = driver.execute_script("return document.documentElement.scrollHeight;")
        metrics = {"width": args.width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        time.sleep(0.5)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.out))
        state = driver.find_element(By.TAG_NAME, "body").get_attribute("data-state")
        print(f"{args.out}: {name}, {len(sequence)} residues, page state {state}")
    finally:
        driver.quit()
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
