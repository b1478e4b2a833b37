"""ex07_transfer grades offline: a submission that asks torchvision for pretrained weights loses
the resnet points with the "no downloads: weights=None" message, in the real sandboxes (which have
no network), and grading finishes promptly instead of waiting on a download.

Two variants of the reference: one asks for ``weights="DEFAULT"`` (the probe's block answers), the
other captured ``torch.hub.load_state_dict_from_url`` when it was imported, before the probe could
replace it, so it really tries the network: the sandbox, not the probe, stops that one.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support import COURSE, require_backend, write_zip

from grader.pipeline import grade_submission

pytest.importorskip("torchvision")

EXERCISE = "ex07_transfer"
TESTS = "test_resnet_builds_offline or test_resnet_output_shapes"
DEADLINE_S = 120  # worker start and two tests; a download stuck on a network would take far longer
REFERENCE = (COURSE.solutions_dir / f"{EXERCISE}.py").read_text(encoding="utf-8")
VARIANTS = {
    "weights_default": REFERENCE.replace('resnet18(weights=None)', 'resnet18(weights="DEFAULT")'),
    "hub_captured_at_import": REFERENCE.replace(
        "from torch import nn\n",
        "from torch import nn\nfrom torch.hub import load_state_dict_from_url as _fetch\n", 1).replace(
        "    model = resnet18(weights=None)\n",
        "    model = resnet18(weights=None)\n"
        "    model.load_state_dict(_fetch('https://weights.invalid/resnet18.pth'))\n"),
}



@pytest.fixture(scope="module", params=["bwrap", "docker"])
def backend(request: pytest.FixtureRequest) -> str:
    return require_backend(request.param)


def test_variants_really_differ_from_the_reference() -> None:
    assert all(source != REFERENCE for source in VARIANTS.values())


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_weight_download_loses_points_offline(variant: str, backend: str, tmp_path: Path) -> None:
    zip_path = write_zip(tmp_path / "submission.zip", {f"exercises/{EXERCISE}.py": VARIANTS[variant]})
    started = time.monotonic()
    report = grade_submission(zip_path, COURSE, sandbox=backend, keyword=TESTS)
    elapsed = time.monotonic() - started
    assert report.sandbox["backend"] == backend and report.sandbox["isolated"]
    assert elapsed < DEADLINE_S, f"grading took {elapsed:.0f} s"
    exercise = next(e for e in report.exercises if e.id == EXERCISE)
    results = {t.name: t for t in exercise.tests}
    assert set(results) == {"test_resnet_builds_offline", "test_resnet_output_shapes"}
    for name, result in results.items():
        text = " ".join(m.en for m in (result.message, result.detail) if m is not None)
        assert result.score == 0 and result.status.value == "failed", (name, result.status, text)
        assert "no downloads: weights=none" in text.lower(), (name, text)
