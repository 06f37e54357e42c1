"""Error types shared by the library and the CLI.

Library code raises :class:`InputError` for anything the user can fix (a missing
file, a malformed record, a bad option); the CLI turns it into one readable line
on stderr and exit code 2. Anything else is a bug: one line and exit code 3
(``pii-unlearn --debug ...`` shows the traceback).

Exit codes, distinct so that CI can tell a leak from a crash:
0 success, 1 an audit gate condition holds, 2 bad input or usage,
3 internal error, 130 interrupted.
"""

from __future__ import annotations

#: Success.
EXIT_OK = 0
#: An ``audit --fail-on`` condition holds (the model fails the release gate).
EXIT_GATE = 1
#: Bad input or usage: nothing was written.
EXIT_USAGE = 2
#: A bug or an unexpected failure (a traceback with ``--debug``).
EXIT_INTERNAL = 3
#: Interrupted by Ctrl-C / SIGINT.
EXIT_INTERRUPTED = 130


class InputError(Exception):
    """A problem with the user's input: message is shown as one line, exit code 2."""
