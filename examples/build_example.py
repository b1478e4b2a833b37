"""Build examples/submission.zip from examples/submission/exercises/.

The example is a student's own solution (written from the stubs' docstrings, not from the
references) with a few realistic mistakes, listed in examples/submission/MISTAKES.md. Graded, it
shows passing tests next to failures and their messages. It lives only in the course's
repository, never in a student kit. Rebuild after editing it: ``python examples/build_example.py``;
a test checks that the shipped zip is current.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "examples" / "submission" / "exercises"
OUTPUT = ROOT / "examples" / "submission.zip"


def build(output: Path = OUTPUT) -> Path:
    sys.path.insert(0, str(ROOT))
    from grader.ingest import pack_directory

    return pack_directory(SOURCE, output)


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else OUTPUT))
