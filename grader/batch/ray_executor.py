"""The Ray executor: the same jobs as Ray tasks, on an existing cluster or a local one.

Each task asks for the CPUs and GPUs its job needs (one GPU per job where the batch grades on
GPUs), so Ray never puts two jobs on one GPU. A task carries the submission's bytes, not a path,
so a node needs only the course (at the same path on every node; the manifest in each report
shows which content graded it) and the runner image or bubblewrap.

Retries are for the infrastructure only: ``max_retries`` re-runs a task whose worker process or
node was lost; ``retry_exceptions=False`` never re-runs one that returned, and a student's
failure is a returned report, not an exception. Results stream back as tasks finish, at most
``--jobs`` in flight, and the driver writes them, so resuming works as with the local executor.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

from grader.batch.job import Job, Settings, grade_job

INFRASTRUCTURE_RETRIES = 3


def _grade_on_node(job: Job, settings: Settings, data: bytes | None) -> dict[str, Any]:
    import ray

    gpu_ids = [str(int(i)) for i in ray.get_gpu_ids()]
    return grade_job(job, settings, ",".join(gpu_ids) or None, data)


def run_ray(jobs: list[Job], settings: Settings, workers: int, *, address: str | None, gpus: bool,
            cpus_per_job: float = 1.0) -> Iterator[tuple[Job, dict[str, Any], float]]:
    """Grade ``jobs`` as Ray tasks; yields (job, outcome, seconds) as each finishes."""
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    task = ray.remote(num_cpus=cpus_per_job, num_gpus=1 if gpus else 0, max_retries=INFRASTRUCTURE_RETRIES,
                      retry_exceptions=False)(_grade_on_node)
    pending = list(reversed(jobs))
    in_flight: dict[Any, tuple[Job, float]] = {}
    try:
        while pending or in_flight:
            while pending and len(in_flight) < workers:
                job = pending.pop()
                data = Path(job.zip_path).read_bytes() if job.zip_path else None
                in_flight[task.remote(job, settings, data)] = (job, time.monotonic())
            done, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
            for ref in done:
                job, began = in_flight.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - the task failed past its retries: the cluster's fault
                    outcome = {"error": f"the Ray task failed: {type(exc).__name__}: {exc}"[:2000]}
                yield job, outcome, time.monotonic() - began
    finally:
        for ref in in_flight:
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()
