"""Build examples/submission.zip: the references with a few deliberate bugs.

Graded, it shows passing tests next to failures and their messages. Rebuild it after changing a
reference: ``python examples/build_example.py``; a test checks that the shipped zip is current.
"""

from __future__ import annotations

import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUGS = ROOT / "examples" / "bugs.toml"
OUTPUT = ROOT / "examples" / "submission.zip"


def build(output: Path = OUTPUT) -> Path:
    sys.path.insert(0, str(ROOT))
    from grader.ingest import pack_directory

    bugs = tomllib.loads(BUGS.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "exercises"
        folder.mkdir()
        for reference in sorted((ROOT / "solutions").glob("ex[0-9][0-9]_*.py")):
            source = reference.read_text(encoding="utf-8")
            for old, new in bugs.get(reference.stem, {}).get("replace", []):
                if source.count(old) != 1:
                    raise SystemExit(f"{BUGS}: {old!r} must occur once in {reference.name}")
                source = source.replace(old, new)
            (folder / reference.name).write_text(source, encoding="utf-8")
        return pack_directory(folder, output)


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else OUTPUT))
