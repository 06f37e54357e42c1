"""The Typer application object and the conventions every subcommand shares.

A subcommand is registered with :func:`command`: it parses options, calls one
library function and prints. :class:`~pii_unlearn.errors.InputError` from the
library becomes one line on stderr and exit code 2; nothing else is caught.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from pii_unlearn import __version__
from pii_unlearn.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, InputError

F = TypeVar("F", bound=Callable[..., Any])

#: ``--overwrite``, shared by every subcommand that writes a folder.
Overwrite = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Replace an existing, non-empty output folder that pii-unlearn did not write "
        "(a folder it wrote is replaced without it).",
    ),
]

console = Console(stderr=True)
out = Console()

app = typer.Typer(
    name="pii-unlearn",
    help=(
        "Sanitize language-model checkpoints: find the PII a model has memorised, "
        "remove it without the training data, and prove the removal with an audit.\n\n"
        "Pipeline: invert -> detect -> risk-score -> unlearn -> audit, every step a file on disk."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)


#: ``--allow-pickle``, the same option on every subcommand that loads a checkpoint's weights.
AllowPickle = typer.Option(
    "--allow-pickle/--no-allow-pickle",
    help="Allow pickle weight files (*.bin, *.pt): pickle can run code on load, trusted checkpoints only.",
)

#: Longest error message printed; anything longer (user content) is cut.
MAX_MESSAGE = 500


def error_line(message: str) -> None:
    """Print ``error: message`` on stderr as one line (newlines folded, long messages cut)."""
    text = " ".join(str(message).split())
    if len(text) > MAX_MESSAGE:
        text = text[:MAX_MESSAGE] + "..."
    console.print(f"[bold red]error:[/] {text}", highlight=False, soft_wrap=True, markup=True)


def fail(message: str) -> None:
    """Print ``error: message`` on stderr and exit with the usage code."""
    error_line(message)
    raise typer.Exit(EXIT_USAGE)


def command(name: str, **kwargs: Any) -> Callable[[F], F]:
    """Register a subcommand whose :class:`InputError` turns into a one-line error, exit 2."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kw: Any) -> Any:
            try:
                return func(*args, **kw)
            except InputError as err:
                fail(str(err))
            except KeyboardInterrupt:
                console.print("[yellow]interrupted[/]: nothing was written")
                raise typer.Exit(EXIT_INTERRUPTED) from None

        app.command(name, **kwargs)(wrapper)
        return func

    return decorate


class StageProgress:
    """A transient rich progress display with one bar per named stage.

    Use as a context manager; pass :meth:`update` as the library's
    ``progress(stage, done, total)`` callback.
    """

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.tasks: dict[str, Any] = {}

    def update(self, stage: str, done: int, total: int | None) -> None:
        """Show ``done`` of ``total`` (``None``: unknown) for ``stage`` (its bar is made on first use)."""
        if stage not in self.tasks:
            self.tasks[stage] = self.bars.add_task(stage, total=total)
        self.bars.update(self.tasks[stage], completed=done, total=total)

    def __enter__(self) -> StageProgress:
        self.bars.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.__exit__(*exc)  # type: ignore[arg-type]


def _version(value: bool) -> None:
    if value:
        out.print(f"pii-unlearn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="On an internal error, show the traceback."),
) -> None:
    """Root options."""


#: How long after a Ctrl-C lost in a finalizer it is raised again (seconds): the finalizer has returned.
INTERRUPT_REDELIVERY_S = 0.05


@contextlib.contextmanager
def interrupts_from_finalizers() -> Iterator[None]:
    """Re-deliver a Ctrl-C that landed inside a finalizer, instead of printing it and losing it.

    Python runs a SIGINT handler between any two bytecodes, so ``KeyboardInterrupt``
    can be raised inside some library's ``__del__``, where it cannot propagate: the
    interpreter prints an "Exception ignored in ..." traceback and goes on as if the
    key had never been pressed. Inside this context such an interrupt is not printed;
    a one-shot timer raises it again a moment later, once the finalizer has returned
    (again and again, should it land in another one), so the run stops the usual way:
    one line, exit 130. Other unraisable exceptions go to the hook that was there
    before. Where timers and signals are not available (not the main thread, no
    ``setitimer``), nothing is changed.
    """
    import signal
    import threading

    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous_hook = sys.unraisablehook
    previous_alarm = signal.signal(signal.SIGALRM, signal.default_int_handler)

    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            signal.setitimer(signal.ITIMER_REAL, INTERRUPT_REDELIVERY_S)
        else:
            previous_hook(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        sys.unraisablehook = previous_hook
        signal.signal(signal.SIGALRM, previous_alarm)


def _debug_requested(args: Sequence[str]) -> bool:
    """Whether ``--debug`` stands before the subcommand name."""
    for arg in args:
        if arg == "--debug":
            return True
        if not arg.startswith("-"):
            return False
    return False


def run(args: Sequence[str] | None = None) -> int:
    """Run the CLI on ``args`` (default: ``sys.argv[1:]``) and return its exit code.

    Usage errors are one line and exit 2; an unexpected exception is one line and
    exit 3 (its traceback with ``--debug``), so a crash is never mistaken for a
    failed gate (exit 1).
    """
    argv = list(sys.argv[1:] if args is None else args)
    try:
        with interrupts_from_finalizers():
            code = app(args=argv, prog_name="pii-unlearn", standalone_mode=False)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: nothing was written")
        return EXIT_INTERRUPTED
    except Exception as exc:
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            # click's (Typer's vendored) usage errors: one line, with a pointer to --help
            if type(exc).__name__ == "Abort":
                console.print("[yellow]interrupted[/]: nothing was written")
                return EXIT_INTERRUPTED
            error_line(f"{exc.format_message()} (see pii-unlearn --help)")
            return EXIT_USAGE
        if _debug_requested(argv):
            traceback.print_exc()
        error_line(
            f"internal error: {type(exc).__name__}: {exc} "
            "(a bug: rerun with pii-unlearn --debug for the traceback)"
        )
        return EXIT_INTERNAL
    return code if isinstance(code, int) else 0
