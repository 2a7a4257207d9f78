"""Graded assignments: tests in the package, feedback in the notebook, a hardened grader.

Grader API for new assignments (stable; Assignments 2 and 3 use it unchanged)
------------------------------------------------------------------------------
An assignment ``NN_name`` is ``solutions/NN_name.ipynb`` (the single source; nbgrader-style
solution markers) plus ``course_utils/grading/aNN_name.py`` with a module-level
``ASSIGNMENT = Assignment("NN_name", title, [Question, ...])``:

- ``Question(id, title, points, cases, functions=(...), forbidden=(...))``; without
  ``cases`` it is graded by hand (``manual_note``). ``functions``: the names the student
  defines -- any binding counts (``def``, ``lambda``, assignment, a callable object).
  ``forbidden``: modules or qualified names the answer may not use, directly or through
  other notebook functions (Assignment 1: ``torch.optim``); checked and enforced by
  ``policy.py``. State the rule in the notebook.
- ``cases(seed) -> list[Case]`` builds the same inputs for the same seed, in any process;
  draw *every* input from the seed (hyperparameters too): ``check()`` uses seed 0, the
  grader a fresh secret seed per run, so no answer can be tabulated in advance. The
  grader builds the cases where the ``forbidden`` libraries are already blocked: build
  inputs without them (``reference`` may use them; it runs elsewhere).
- ``Case(label, run, reference, compare, weight=1.0)``. ``run(namespace)`` is the only
  code that touches student functions and runs only in a throw-away child: fetch them with
  ``student_function(ns, name)``, call them with ``call_student(fn, where, ...)``, check the
  *kind* of what comes back (``real_number``, ``integer``, ``check_tensor`` or a
  StudentError that says what was expected) and return plain values (tensors, numbers,
  strings, lists, dicts).
  ``reference()`` computes the expected value **from a library**, never from a copy of the
  solution; it runs only where student code never runs. ``compare(got, expected)`` returns
  ``None`` or one specific message (``compare_trajectory``, ``compare_sequence``).
  Include the edge values a real run meets (exact zeros, multi-dimensional tensors, long
  runs), as ``a01_optimizers.py`` does.
- Wrong answers go in ``tests/grading_fixtures.py``; ``tests/test_grading*.py`` show how
  to test an assignment. ``chapters/assignments/instructors.md`` has the whole workflow.

How it runs
-----------
- In a notebook: ``check = Checker("NN_name")``, then ``check("q1")``: the question's
  tests run in a child forked from the kernel (``probe.probe_question``, time-limited,
  policy enforced) and are judged in the kernel. ``with skip_unanswered(): ...`` around
  cells that use functions the student may not have written yet.
- Grading: ``python -m course_utils.grade NOTEBOOK_OR_DIR... [--json F] [--csv F]``. A
  sandboxed child (``runner.py``, ``sandbox.py``) runs the notebook's cells as IPython does,
  then each question through the same ``probe.probe_question``; the grading process, which
  never runs student code, judges the outputs after every process of the submission is
  dead, and verifies the environment before each submission.
- Student notebooks: ``python -m course_utils.assign`` (``assignments/`` from
  ``solutions/``); the student-facing course: ``python -m course_utils.assign --release
  DIR [--repo-url URL]`` (``make release``).
"""

from __future__ import annotations

from .bridge import RuleOptimizer, surface_update
from .core import Assignment, Case, Question, QuestionResult, load_assignment
from .feedback import Checker, skip_unanswered

__all__ = ["Assignment", "Case", "Checker", "Question", "QuestionResult", "RuleOptimizer",
           "load_assignment", "skip_unanswered", "surface_update"]
