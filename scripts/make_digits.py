"""Build ``data/public/digits8x8.npz`` from the digits table that scikit-learn ships (``digits.csv.gz``).

The course vendors the result so that nothing downloads at grading time and scikit-learn (with
scipy) is not a dependency. Run it again only to check the vendored file:

    pip download scikit-learn --no-deps -d /tmp/skl && unzip -o /tmp/skl/*.whl 'sklearn/datasets/data/digits.csv.gz' -d /tmp/skl
    python scripts/make_digits.py /tmp/skl/sklearn/datasets/data/digits.csv.gz
"""

from __future__ import annotations

import argparse
import hashlib
import io
from pathlib import Path

import numpy as np

TARGET = Path(__file__).resolve().parents[1] / "data" / "public" / "digits8x8.npz"


def build(csv_gz: Path) -> bytes:
    table = np.loadtxt(csv_gz, delimiter=",", dtype=np.int64)
    images = table[:, :64].reshape(-1, 8, 8).astype(np.uint8)  # grey levels 0..16
    labels = table[:, 64].astype(np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=images, labels=labels)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv_gz", type=Path)
    parser.add_argument("--out", type=Path, default=TARGET)
    args = parser.parse_args()
    with np.load(io.BytesIO(build(args.csv_gz))) as data:
        images, labels = data["images"], data["labels"]
    # savez output is not byte-stable across numpy versions: the arrays' hash is what the tests pin
    digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
    args.out.write_bytes(build(args.csv_gz))
    print(f"{args.out}: {len(labels)} images, arrays sha256 {digest}")


if __name__ == "__main__":
    main()
