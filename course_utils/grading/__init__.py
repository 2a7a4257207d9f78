"""Graded assignments: tests in the package, feedback in the notebook, a grader that is tested.

- In a notebook: ``check = Checker("01_optimizers")``, then ``check("q1")`` after a question
  (specific feedback, never a bare traceback); ``with skip_unanswered(): ...`` around cells
  that use functions the student may not have written yet.
- Regenerate student notebooks: ``python -m course_utils.assign`` (``assignments/`` from
  ``solutions/``).
- Grade: ``python -m course_utils.grade NOTEBOOK... [--json out.json] [--timeout S]``.

An assignment ``NN_name`` is defined in ``course_utils/grading/aNN_name.py`` (its questions,
tests and expected values); see ``chapters/assignments/instructors.md``.
"""

from __future__ import annotations

from .bridge import RuleOptimizer, surface_update
from .core import Assignment, Case, Question, QuestionResult, load_assignment
from .feedback import Checker, skip_unanswered

__all__ = ["Assignment", "Case", "Checker", "Question", "QuestionResult", "RuleOptimizer",
           "load_assignment", "skip_unanswered", "surface_update"]
