"""The grading tests' view of an assignment (Assignments 2-5): its fixtures, its questions,
the grader's expected values computed once, and each question graded as the grader does it.

``test_grading_assignments.py`` runs what every assignment must pass on all of them; each
``test_grading_aNN.py`` imports :func:`spec` and :func:`grade_in_process` for what is
particular to its assignment.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from types import ModuleType

import nbformat

from course_utils import grade
from course_utils.grading import load_assignment
from course_utils.grading.core import Assignment, judge
from course_utils.grading.probe import probe_question, run_question


@dataclass(frozen=True)
class Spec:
    """One assignment, as these tests need it."""

    name: str  # the notebook's name, e.g. "03_architectures"
    stubs: int  # `raise NotImplementedError` lines in the student copy
    written: str  # the hand-graded question
    min_words: int  # the model answer to it is longer than this
    hang: tuple[str, str, str, str]  # fixture holding a hanging answer, the function its cell
    #                                  defines, the question it hangs, a question it must spare
    question_timeout: float = 3  # per question in the sandboxed run; A4's questions train
    #                              small networks: 8 s is twice the slowest at load 8
    labels_vary: bool = True  # A2's test labels name fixed shapes; only its values vary

    @property
    def fixtures(self) -> ModuleType:
        return importlib.import_module(f"grading_fixtures_a{self.name[:2]}")

    @property
    def assignment(self) -> Assignment:
        return _assignment(self.name)

    @property
    def auto(self) -> list:
        return [q for q in self.assignment.questions if not q.manual]

    @property
    def full(self) -> dict[str, int]:
        return {q.id: q.points for q in self.auto}

    def definitions(self, nb: nbformat.NotebookNode) -> dict:
        return self.fixtures.FILES.definitions(nb)

    def solution(self) -> nbformat.NotebookNode:
        return self.fixtures.FILES.solution()

    def student(self) -> nbformat.NotebookNode:
        return self.fixtures.FILES.student()


SPECS = [
    Spec("02_regularization", 8, "q7", 100, ("SWALLOWED_HANG", "dropout_backward", "q1", "q2"),
         labels_vary=False),
    Spec("03_architectures", 12, "q8", 150, ("HANGING_BLOCK", "ResidualBlock", "q5", "q6")),
    Spec("04_transfer_learning", 5, "q6", 150,
         ("HANGING_FREEZE", "freeze_all_but_head", "q1", "q2"), question_timeout=8),
    Spec("05_efficiency", 9, "q7", 200, ("HANGING_HUFFMAN", "huffman_bits", "q4", "q5")),
]


def spec(name: str) -> Spec:
    """The spec of the assignment whose notebook is ``name``."""
    return next(s for s in SPECS if s.name == name)


@cache
def _assignment(name: str) -> Assignment:
    return load_assignment(name)


@cache
def expected(name: str) -> dict:
    """The grader's cases at its test seed, with the libraries' values computed once."""
    cases = grade.prepared_cases(_assignment(name), grade.GRADE_SEED)
    for qcases in cases.values():
        for case in qcases:
            case.expected()
    return cases


def grade_in_process(spec: Spec, namespace: dict, fork: bool = True,
                     only: tuple[str, ...] = ()) -> dict:
    """Each question (or ``only`` these) as the grader runs it, judged against the expected
    values (``fork=False``: the probe child's work, done in this process)."""
    results = {}
    for q in spec.auto:
        if only and q.id not in only:
            continue
        fresh = q.cases(grade.GRADE_SEED)  # no expected value in the child's cases
        report = probe_question(namespace, q, fresh, timeout=60) if fork else \
            run_question(namespace, q, fresh, enforce=False)
        results[q.id] = judge(q, expected(spec.name)[q.id], report["outcomes"],
                              note=report["note"])
    return results
