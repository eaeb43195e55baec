"""The ``favor serve`` command line: argument parsing, a clean failure on a bad model, a real socket."""

import socket
import subprocess
import sys
import time

import pytest
import torch

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from favor import cli  # noqa: E402
from favor.models import ModelConfig, SequenceModel, save_pretrained  # noqa: E402


def parse(argv):
    return cli.build_parser().parse_args(argv)


def test_serve_parses_with_loopback_defaults():
    args = parse(["serve", "runs/x"])
    assert (args.run_dir, args.host, args.port) == ("runs/x", "127.0.0.1", 8000)
    args = parse(["serve", "runs/x", "--port", "9001", "--max-wait-ms", "2", "--max-batch-rows", "8"])
    assert (args.port, args.max_wait_ms, args.max_batch_rows) == (9001, 2.0, 8)


def test_serve_fails_cleanly_on_a_missing_model(tmp_path, capsys):
    assert cli.main(["serve", str(tmp_path / "absent")]) == 1
    err = capsys.readouterr().err
    assert "favor serve: error:" in err and "no such file or directory" in err


@pytest.mark.slow
def test_server_answers_on_loopback(tmp_path):
    torch.manual_seed(0)
    config = ModelConfig(
        task="mlm", vocab_size=29, d_model=16, n_layers=1, n_heads=2, d_ff=32, max_length=32, dropout=0.0,
        attention={"nb_features": 8},
    )  # fmt: skip
    save_pretrained(SequenceModel(config), tmp_path)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "favor.cli",
        "serve",
        str(tmp_path),
        "--port",
        str(port),
        "--log-level",
        "error",
    ]
    server = subprocess.Popen(command)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, "the server exited"
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start within 60 s"
                time.sleep(0.2)
        assert health.json()["task"] == "mlm"
        embed = httpx.post(f"http://127.0.0.1:{port}/embed", json={"sequences": ["MKTAY"]}, timeout=10)
        assert embed.status_code == 200 and len(embed.json()["embeddings"][0]) == 16
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_serve_cli_fits_the_favor_command_framework(monkeypatch):
    cli = pytest.importorskip("favor.cli")
    from favor.serve.server import serve_cli

    monkeypatch.setitem(cli.COMMANDS, "serve-check", serve_cli)
    args = cli.build_parser().parse_args(["serve-check", "runs/x", "--port", "9001", "--max-wait-ms", "2"])
    assert (str(args.run_dir), args.host, args.port, args.max_wait_ms, args.threads) == (
        "runs/x", "127.0.0.1", 9001, 2.0, None
    )  # fmt: skip
