"""The throw-away process that runs a student's definitions on the tests' inputs.

``python -m course_utils.grading.probe ASSIGNMENT DEFINITIONS.json OUT.pt --seed S
--question-timeout T`` builds every question's cases (the same inputs the grader builds),
executes only the student's definitions (see ``definitions.py``) in a clean namespace, then
runs each question's cases and saves the raw outcomes -- values or error messages, never a
verdict -- to ``OUT.pt`` after each question. The grader judges them in its own process.

Pure-Python hangs are cut off per question by a timer signal; anything worse (a hang in C
code, a crash, ``os._exit``) is the grader's to handle: it kills this process at its own time
limit and counts the questions without outcomes as not run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import Any

import torch

from .core import describe_exception, load_assignment, run_case
from .definitions import exec_definitions


class QuestionTimeout(BaseException):
    """Raised by the timer; a BaseException so ``except Exception`` in student code misses it."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise QuestionTimeout


def _save(report: dict[str, Any], path: str) -> None:
    tmp = path + ".tmp"
    torch.save(report, tmp)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils.grading.probe")
    parser.add_argument("assignment")
    parser.add_argument("definitions")
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--question-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)

    assignment = load_assignment(args.assignment)
    # Inputs first, before any student code runs.
    questions = [(q, q.cases(args.seed)) for q in assignment.questions if not q.manual]
    with open(args.definitions, encoding="utf-8") as f:
        cells = json.load(f)
    report: dict[str, Any] = {"definition_problems": [], "outcomes": {}, "notes": {}}
    _save(report, args.out)

    namespace: dict[str, Any] = {"__name__": "__student__"}
    timer = hasattr(signal, "setitimer")
    if timer:
        signal.signal(signal.SIGALRM, _on_alarm)
    try:
        if timer:
            signal.setitimer(signal.ITIMER_REAL, args.question_timeout)
        report["definition_problems"] = exec_definitions(cells, namespace)[1]
    except QuestionTimeout:
        report["definition_problems"] = ["defining the notebook's functions took longer than "
                                         f"{args.question_timeout:g} s"]
    finally:
        if timer:
            signal.setitimer(signal.ITIMER_REAL, 0)
    _save(report, args.out)

    for question, cases in questions:
        outcomes: list[dict[str, Any]] = []
        try:
            if timer:
                signal.setitimer(signal.ITIMER_REAL, args.question_timeout)
            for case in cases:
                outcomes.append(run_case(case, namespace))
        except QuestionTimeout:
            report["notes"][question.id] = (f"stopped after {args.question_timeout:g} s (an "
                                            "infinite loop?)")
        except BaseException as error:  # noqa: BLE001 - e.g. SystemExit from student code
            report["notes"][question.id] = f"stopped: {describe_exception(error)}"
        finally:
            if timer:
                signal.setitimer(signal.ITIMER_REAL, 0)
        report["outcomes"][question.id] = outcomes
        _save(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
