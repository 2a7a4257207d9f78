"""``python -m course_utils.grading.jail SCRATCH -- COMMAND...``: run COMMAND in the sandbox.

Locks this process with :func:`sandbox.restrict_self` (writes only under ``SCRATCH``; TCP
stays open because a Jupyter kernel talks to its client over localhost), then replaces it
with ``COMMAND``, which inherits the lock. Used to start the Jupyter kernel of
``grade --executed``.
"""

from __future__ import annotations

import os
import sys

from .sandbox import restrict_self


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m course_utils.grading.jail SCRATCH -- COMMAND...", file=sys.stderr)
        return 2
    restrict_self([argv[0]], network=True)
    command = argv[2:]
    os.execvp(command[0], command)
    return 1  # pragma: no cover - execvp does not return


if __name__ == "__main__":
    sys.exit(main())
