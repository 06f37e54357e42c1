"""Error types shared by the library and the CLI.

Library code raises :class:`InputError` for anything the user can fix (a missing
file, a malformed record, a bad option); the CLI turns it into one readable line
on stderr and exit code 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

#: Exit code for usage and input errors (the CLI gate uses 1 for "condition failed").
EXIT_USAGE = 2


class InputError(Exception):
    """A problem with the user's input: message is shown as one line, exit code 2."""
