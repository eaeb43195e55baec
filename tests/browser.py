"""A real headless browser for the page tests: Debian's chromium + chromium-driver driven by Selenium.

Nothing is downloaded at run time (Selenium is handed both binaries, so its driver manager never runs).
Without a browser the tests fail, as CI must; set FAVOR_ALLOW_NO_BROWSER=1 to skip them instead on a
machine without one. `.ci/run` installs them: ``apt-get install -y chromium chromium-driver``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def no_browser(reason: str):
    """Skip with FAVOR_ALLOW_NO_BROWSER=1, fail otherwise."""
    if os.environ.get("FAVOR_ALLOW_NO_BROWSER") == "1":
        pytest.skip(f"{reason} (FAVOR_ALLOW_NO_BROWSER=1)")
    pytest.fail(f"{reason}; install chromium and chromium-driver, or set FAVOR_ALLOW_NO_BROWSER=1 to skip")


def chrome(download_dir: Path, *, width: int = 1400, height: int = 2000):
    """A headless Chromium WebDriver that saves downloads to ``download_dir``."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        no_browser("selenium is not installed (pip install -e '.[dev]')")
    binary = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        no_browser(f"no browser found (chromium: {binary}, chromedriver: {driver})")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(download_dir), "download.prompt_for_download": False},
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: str, port: int, *extra: str) -> subprocess.Popen:
    """``favor serve MODEL`` on 127.0.0.1:port in a subprocess; returns once /health answers."""
    import httpx

    command = [sys.executable, "-m", "favor.cli", "serve", model, "--port", str(port), *extra]
    server = subprocess.Popen(command)
    deadline = time.monotonic() + 90
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"favor serve exited with {server.returncode}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
            return server
        except httpx.TransportError:
            if time.monotonic() > deadline:
                server.terminate()
                raise RuntimeError("favor serve did not answer within 90 s") from None
            time.sleep(0.2)
