"""Every ``favor ...`` command written in README.md and docs/ parses with the real command line (names and
options exist), and the configs they name load and hold what the command needs (a tune: section for
``favor tune``), so the docs cannot silently rot."""

import re
import shlex
from pathlib import Path

import pytest

from favor import cli
from favor.runs.config import load_run_config

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _commands():
    found = []
    for doc in DOCS:
        in_block, pending, variables = False, "", {}
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip().startswith("```"):
                in_block = not in_block and line.strip() in ("```bash", "```sh", "```console")
                continue
            if not in_block:
                continue
            text = pending + line.split(" # ")[0].rstrip()
            if text.endswith("\\"):
                pending = text[:-1] + " "
                continue
            pending = ""
            text = re.sub(r"^\s*(\$ )?(\.venv/bin/)?", "", text)
            text = re.sub(r"\[(--[^\]]*)\]", r"\1", text)  # [--option value]: tried with the option
            # Shell variables holding shared options ($D, $S) are expanded as the docs define them.
            for name, value in variables.items():
                text = text.replace(f"${name}", value)
            assignment = re.match(r'^([A-Z]+)="(.*)"$', text.strip())
            if assignment:
                variables[assignment.group(1)] = assignment.group(2)
                continue
            for part in text.split("&&"):
                part = part.strip()
                if part.startswith("favor "):
                    found.append(pytest.param(part, id=f"{doc.name}:{number}"))
    return found


COMMANDS = _commands()


def test_the_docs_hold_commands():
    assert len(COMMANDS) > 20


@pytest.mark.parametrize("command", COMMANDS)
def test_documented_command_parses(command):
    argv = shlex.split(command)[1:]
    parser = cli.build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as error:
        pytest.fail(f"`{command}` does not parse (exit {error.code})")
    config = getattr(args, "config", None)
    if config is not None and str(config).startswith("configs/"):
        run = load_run_config(ROOT / config)
        if argv[0] == "tune":
            assert run.tune, f"`{command}`: {config} has no tune: section"
