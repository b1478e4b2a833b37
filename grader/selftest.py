"""Before grading anyone: can this host grade at all?

A worker that cannot start (torch not importable by the sandbox's interpreter, the runner image
missing, the sandbox refused) or a reference that cannot be imported would otherwise surface as
failed tests, i.e. as zeros for students who did nothing wrong. These checks run first and end
the run with a :class:`~grader.verdicts.HostFault` that says what to fix on the host.
"""

from __future__ import annotations

import threading

from grader.grading import GradingRun
from grader.remote import IMPORT_TIMEOUT_S, OutputCapture
from grader.verdicts import HostFault, SubmissionProblem


def _tail(capture: OutputCapture, lines: int = 6) -> str:
    text = capture.text("(startup)").strip()
    return ("\n" + "\n".join(text.splitlines()[-lines:])) if text else ""


def check_student_worker(run: GradingRun) -> None:
    """The sandbox starts a worker (torch imported, channel up) before any student code runs."""
    try:
        run.student_session().start()
    except SubmissionProblem as problem:  # nothing of the submission has run yet: this is the host's
        raise HostFault(f"the {run.sandbox.name} sandbox could not start a worker on this host "
                        f"({problem.message.en}){_tail(run.capture)}") from None


def check_references(run: GradingRun) -> None:
    """Every exercise has a reference, and it imports here and in a worker like the student's."""
    if run.reference_dir is None:
        raise HostFault("no reference solutions: grading needs the course's solutions/ "
                        "(use the course repository or a `grader export autograder` folder)")
    specs = run.course.exercises()
    missing = [spec.id for spec in specs if not (run.reference_dir / f"{spec.id}.py").is_file()]
    if missing:
        raise HostFault(f"reference solutions missing in {run.reference_dir}: {', '.join(missing)}; "
                        "no final score can be given without them")
    session = run.reference_session()
    assert session is not None
    for spec in specs:
        try:
            run.reference(spec)
        except Exception as exc:  # noqa: BLE001 - any failure of trusted code is the host's
            raise HostFault(f"the reference {spec.id} does not import in the grader: {type(exc).__name__}: {exc}") from None
        try:
            session.request({"op": "load", "exercise": spec.id}, IMPORT_TIMEOUT_S)
        except SubmissionProblem as problem:
            raise HostFault(f"the reference {spec.id} does not import in a worker on this host: "
                            f"{problem.message.en}{_tail(session.capture)}") from None


def check_host(run: GradingRun, *, references: bool = True) -> None:
    """Run both checks at once (each starts a worker: seconds, not minutes); raise the first fault."""
    faults: list[BaseException] = []

    def guarded(check) -> None:  # noqa: ANN001 - one of the checks above
        try:
            check(run)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            faults.append(exc)

    thread = threading.Thread(target=guarded, args=(check_references,)) if references else None
    if thread is not None:
        thread.start()
    guarded(check_student_worker)
    if thread is not None:
        thread.join()
    if faults:
        raise faults[0]
