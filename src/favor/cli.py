"""``favor``: one command-line entry point whose subcommands are typed functions.

A subcommand is a function registered with ``@command``; its parser is built from its signature and its help
from its docstring. Parameters before ``*`` become positional arguments, keyword-only ones become options
(``max_steps`` -> ``--max-steps``; a trailing underscore is dropped, so ``set_`` -> ``--set``). ``bool``
options are flags, ``list[str]`` options repeat, ``X | None`` options default to None, and a keyword-only
parameter without a default is a required option. To add a subcommand, write one function here::

    @command()
    def embed(model_dir: Path, *, data: Path, out: Path) -> int:
        '''Write per-protein embeddings.  (first line: the summary in `favor --help`)

        Args:
            model_dir: ...
        '''

Errors (missing file, bad config, bad FASTA, unknown residue, corrupt checkpoint) print one line on stderr
and exit with status 1; set ``FAVOR_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from favor.extras import missing_extra_message
from favor.jsonsafe import json_safe

__all__ = ["COMMANDS", "command", "build_parser", "main"]

COMMANDS: dict[str, Callable[..., int | None]] = {}


def command(name: str | None = None) -> Callable[[Callable[..., int | None]], Callable[..., int | None]]:
    """Register a function as the subcommand ``name`` (default: the function name with dashes)."""

    def register(func: Callable[..., int | None]) -> Callable[..., int | None]:
        key = name or func.__name__.rstrip("_").replace("_", "-")
        if key in COMMANDS:
            raise ValueError(f"favor CLI: subcommand {key!r} is registered twice")
        COMMANDS[key] = func
        return func

    return register


def _split_docstring(func: Callable[..., Any]) -> tuple[str, str, dict[str, str]]:
    """(summary line, description without the Args block, per-argument help).

    An argument line reads ``name: help`` or ``name (METAVAR): help``; the metavar is kept in the help
    text as a ``(METAVAR)`` prefix, which `_add_parameter` strips off.
    """
    doc = inspect.getdoc(func) or ""
    summary = doc.splitlines()[0] if doc else ""
    lines, args, current, in_args = [], {}, None, False
    for line in doc.splitlines():
        if line.strip() in ("Args:", "Arguments:"):
            in_args = True
            continue
        if in_args and line and not line.startswith(" "):
            in_args = False
        if not in_args:
            lines.append(line)
            continue
        stripped = line.strip()
        head, sep, rest = stripped.partition(":")
        name, _, metavar = head.partition(" ")
        if sep and line.startswith("    ") and not line.startswith("        ") and name.isidentifier():
            current = name
            args[current] = f"{metavar} {rest.strip()}" if metavar else rest.strip()
        elif current and stripped:
            args[current] += " " + stripped
    return summary, "\n".join(lines).strip(), args


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return hint, False


def _add_parameter(parser: argparse.ArgumentParser, param: inspect.Parameter, hint: Any, text: str) -> None:
    base, _ = _unwrap_optional(hint)
    has_default = param.default is not inspect.Parameter.empty
    default = param.default if has_default else None
    metavar = param.name.rstrip("_").upper()
    if text.startswith("(") and ")" in text:
        metavar, text = text[1 : text.index(")")], text[text.index(")") + 1 :].strip()
    kwargs: dict[str, Any] = {"help": text or None}
    if typing.get_origin(base) is list:
        kwargs.update(action="append", type=typing.get_args(base)[0], default=None, metavar=metavar)
    elif base is bool:
        kwargs.update(
            action=argparse.BooleanOptionalAction if default else "store_true", default=bool(default)
        )
    else:
        kwargs.update(type=base, default=default, metavar=metavar)
        if has_default and default is not None and text:
            kwargs["help"] = f"{text} (default: {default})"
    if param.kind is inspect.Parameter.KEYWORD_ONLY:
        flag = "--" + param.name.rstrip("_").replace("_", "-")
        parser.add_argument(flag, dest=param.name, required=not has_default, **kwargs)
    else:
        if has_default:
            kwargs["nargs"] = "?"
        parser.add_argument(param.name, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """The ``favor`` parser with one subparser per registered command."""
    parser = argparse.ArgumentParser(
        prog="favor",
        description="Long-context sequence modeling with Performer (FAVOR+) attention (proteins, text, ...).",
        epilog="Run 'favor <command> --help' for a command's options. Start with 'favor demo'.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for name, func in COMMANDS.items():
        summary, description, arg_help = _split_docstring(func)
        sub = subparsers.add_parser(
            name, help=summary, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        hints = typing.get_type_hints(func)
        for param in inspect.signature(func).parameters.values():
            _add_parameter(sub, param, hints.get(param.name, str), arg_help.get(param.name, ""))
        sub.set_defaults(_func=func)
    return parser


def _print_json(data: Any) -> None:
    print(json.dumps(json_safe(data), indent=None, sort_keys=False))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``favor`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "_func", None)
    if func is None:
        parser.print_help()
        return 0
    kwargs = {k: v for k, v in vars(args).items() if k not in ("_func", "command")}
    try:
        status = func(**kwargs)
    except KeyboardInterrupt:
        print(f"favor {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # the one place that turns errors into an exit status
        if os.environ.get("FAVOR_DEBUG") == "1":
            raise
        hint = missing_extra_message(error) if isinstance(error, ModuleNotFoundError) else None
        print(f"favor {args.command}: error: {hint or _one_line(error)}", file=sys.stderr)
        return 1
    return int(status or 0)


def _one_line(error: BaseException) -> str:
    message = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, (OSError, ValueError, KeyError, LookupError)):
        return message
    return f"{type(error).__name__}: {message} (set FAVOR_DEBUG=1 for the traceback)"


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


@command(name="train")
def train_command(
    config: Path | None = None,
    *,
    out: Path | None = None,
    train: Path | None = None,
    valid: Path | None = None,
    max_steps: int | None = None,
    max_minutes: float | None = None,
    set_: list[str] | None = None,
    resume: Path | None = None,
    quiet: bool = False,
) -> int:
    """Train a model from a YAML config: protein or character LM, forecaster, classifier (or under torchrun).

    The config picks the data (data.source: protein, timeseries, text, digits), the task (train.objective)
    and the architecture (model.backbone: performer, transformer, linformer, rnn, lstm, gru, cnn).
    Writes RUN_DIR/{config.yaml, metrics.csv, checkpoints/, model/, loss_curve.png, summary.json}.
    Under 'torchrun --nproc_per_node=N' the same command trains with DistributedDataParallel.

    Args:
        config (CONFIG): run config YAML (sections model, data, train); with --resume the default is
            RUN_DIR/config.yaml.
        out (RUN_DIR): run folder to write (default: the --resume folder).
        train (FASTA): training FASTA file (overrides data.train; default: the bundled sample).
        valid (FASTA): validation FASTA file (overrides data.valid; "none" disables validation).
        max_steps (N): stop after this many optimizer steps (overrides train.max_steps).
        max_minutes (M): stop after this many minutes of this invocation (overrides train.max_minutes).
        set_ (SECTION.KEY=VALUE): override any config value (YAML-typed), e.g. --set train.lr=3e-4
            --set model.n_layers=4; repeatable.
        resume (RUN_DIR): continue the latest checkpoint of this run folder exactly where it stopped.
        quiet: no progress bar or progress messages.
    """
    from favor.runs.config import load_run_config
    from favor.runs.folder import CONFIG_FILE
    from favor.train.run import describe_metrics, train_run

    if config is None and resume is None:
        raise ValueError("give a CONFIG file, or --resume RUN_DIR to continue a run")
    if out is None and resume is None:
        raise ValueError("--out RUN_DIR is required (the folder the run writes)")
    source = config if config is not None else Path(resume) / CONFIG_FILE
    named = {"data.train": train, "data.valid": valid, "train.max_steps": max_steps}
    named["train.max_minutes"] = max_minutes
    run = load_run_config(source, overrides=set_ or [], values=named)
    run_dir = out if out is not None else resume
    summary = train_run(run, out_dir=run_dir, resume=resume, quiet=quiet, echo=print)
    if _is_main_process():
        valid_metrics = summary.get("valid") or {}
        line = (
            f"trained {summary['steps']} steps ({summary['stop_reason']}), {summary['params']:,} parameters, "
            f"{summary['tokens_per_s']:,.0f} tokens/s"
        )
        if valid_metrics:
            line += f"; {describe_metrics(valid_metrics)}"
        print(line)
        print(f"model: {Path(run_dir) / 'model'}  metrics: {Path(run_dir) / 'metrics.csv'}")
    return 0


@command(name="evaluate")
def evaluate_command(
    run_dir: Path,
    *,
    data: Path | None = None,
    split: str = "test",
    concatenated: bool = False,
    json_: bool = False,
    max_batches: int | None = None,
    max_length: int | None = None,
    device: str = "auto",
    threads: int | None = None,
    beam: int = 1,
    max_words: int | None = None,
) -> int:
    """Score a trained run with its task's metrics against baselines on the same targets.

    Protein runs are scored on a FASTA file (--data): masked LM runs on seeded evaluation masks (the same
    masked positions for every model), causal LM runs on every next token (then n_masked counts predicted
    tokens and "objective" says "clm"); the unigram baseline (training-data residue frequencies) is scored
    on the same targets. Other runs are scored on the held-out part of their own data (--split): time
    series by MAE, RMSE and MASE against naive, seasonal-naive and ARIMA forecasts of the same windows;
    text by bits per character against the unigram baseline; digits by accuracy against the majority class;
    g2p by phoneme and word error rates of the decoded pronunciations (docs/tasks.md).

    Args:
        run_dir: a folder written by 'favor train'.
        data (FILE): FASTA file to evaluate a protein run on (required there), or a text file for a text run.
        split: held-out part of a timeseries, text or digits run: test or valid.
        concatenated: score windows of concatenated proteins instead of single proteins.
        json_: print exactly one JSON object.
        max_batches (N): stop after this many batches.
        max_length (N): tokens per item (default: the run's data.max_length).
        device: auto (cuda if available), cpu, cuda or cuda:N.
        threads (N): torch CPU threads (default: the run's train.cpu_threads, else one per core).
        beam (N): g2p runs: beam width (1: greedy decoding).
        max_words (N): g2p runs: decode at most N words (every k-th word of the split).
    """
    from favor.runs.evaluate import evaluate_run, format_metrics

    metrics = evaluate_run(
        run_dir,
        data=data,
        split=split,
        concatenated=concatenated,
        max_batches=max_batches,
        max_length=max_length,
        device=device,
        threads=threads,
        beam=beam,
        max_words=max_words,
    )
    if json_:
        _print_json(metrics)
        return 0
    print("\n".join(format_metrics(run_dir, metrics)))
    return 0


@command(name="demo")
def demo_command(
    *, out: Path = Path("favor-demo"), minutes: float = 2.0, max_length: int = 16384, quiet: bool = False
) -> int:
    """Show what FAVOR+ is for: attention cost from 1K to 16K tokens, and long-window training at equal time.

    Times one FAVOR+ attention call against exact attention from 1,024 tokens to --max-length, then trains a
    tiny Performer and a same-size exact Transformer masked LM for --minutes each on 4,096-token windows of
    concatenated proteins from the bundled sample, and scores both on the bundled held-out proteins with
    the same masks. Prints both tables and writes OUT/demo.png (the story in one figure),
    OUT/loss_curves.png and OUT/summary.json. About 5 minutes on 2 cores with the defaults.

    Args:
        out (DIR): folder for the two runs, the figures and the summary.
        minutes (M): training time per model.
        max_length (N): the longest attention call timed (powers of two from 1,024).
        quiet: no progress bars or progress messages.
    """
    from favor.demo import run_demo

    lengths, n = [], 1024
    while n <= max_length:
        lengths.append(n)
        n *= 2
    if not lengths:
        raise ValueError(f"--max-length {max_length}: at least 1024")
    run_demo(out_dir=out, minutes=minutes, quiet=quiet, op_lengths=tuple(lengths))
    return 0


def _register_extensions() -> None:
    """Subcommands whose code lives with its subsystem (imports of heavy extras stay inside the functions)."""
    from favor.convert import convert_cli
    from favor.export import export_cli
    from favor.generation_cli import generate_command
    from favor.serve.server import serve_cli
    from favor.tasks.blosum import blosum_cli
    from favor.tasks.contacts_cli import contacts_cli
    from favor.tasks.embed import embed_cli
    from favor.tasks.finetune import finetune_cli
    from favor.tasks.score import score_cli
    from favor.train.tune import tune_cli

    command(name="generate")(generate_command)
    command(name="embed")(embed_cli)
    command(name="score")(score_cli)
    command(name="finetune")(finetune_cli)
    command(name="blosum")(blosum_cli)
    command(name="serve")(serve_cli)
    command(name="export")(export_cli)
    command(name="tune")(tune_cli)
    command(name="convert")(convert_cli)
    command(name="contacts")(contacts_cli)


_register_extensions()

if __name__ == "__main__":
    sys.exit(main())
