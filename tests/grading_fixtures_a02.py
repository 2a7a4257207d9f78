"""Notebooks for Assignment 2's grading tests, made from solutions/02_regularization.ipynb.

Every wrong answer is the solution with one classic bug typed in (``Variant`` and
``with_bug`` from ``grading_fixtures``), so the variants follow the solution when it changes.
Not released to students (``assign.RELEASE_EXCLUDE``): the edits quote the solution.
"""

from __future__ import annotations

import nbformat
from grading_fixtures import AssignmentFiles, _v, replace_cell, swallowing_hang

FILES = AssignmentFiles("02_regularization", 'check("q6")')
SOLUTION, ASSIGNMENT = FILES.solution_path, FILES.assignment_path
solution, student, answers_only = FILES.solution, FILES.student, FILES.answers_only


BN_GRAD_X = ("inv_std * (g - g.mean(dim=axes, keepdim=True)\n"
             "                        - x_hat * (g * x_hat).mean(dim=axes, keepdim=True))")

VARIANTS = [
    # Q1: dropout
    _v("dropout scales by p instead of 1/(1-p)", "dropout_forward", "q1",
       ("keep_scale = mask / (1 - p)", "keep_scale = mask * p")),
    _v("dropout scales by 1/p", "dropout_forward", "q1",
       ("keep_scale = mask / (1 - p)", "keep_scale = mask / p")),
    _v("dropout without rescaling", "dropout_forward", "q1",
       ("keep_scale = mask / (1 - p)", "keep_scale = mask")),
    _v("dropout keeps with probability p", "dropout_forward", "q1",
       ("(torch.rand(x.shape) >= p)", "(torch.rand(x.shape) < p)")),
    _v("dropout mask redrawn in backward", "dropout_forward", "q1",
       ('return x * keep_scale, {"keep_scale": keep_scale}',
        'return x * keep_scale, {"keep_scale": keep_scale, "p": p}'),
       ('return grad_out * cache["keep_scale"]',
        'p = cache["p"]\n    return grad_out * (torch.rand(grad_out.shape) >= p) / (1 - p)')),
    _v("dropout active in eval mode", "dropout_forward", "q1",
       ("if not training:", "if False:")),
    _v("dropout through F.dropout", "dropout_forward", "q1",
       ("    if not training:",
        "    if training and mask is None:\n"
        "        out = torch.nn.functional.dropout(x, p)\n"
        '        return out, {"keep_scale": (out != 0) / (1 - p)}\n'
        "    if not training:")),
    # Q2: batch norm forward
    _v("BN normalizes with the unbiased variance", "batch_norm_forward", "q2",
       ("var_b = ((x - mu_b.view(as_channels)) ** 2).mean(dim=axes)",
        "var_b = x.var(dim=axes)")),
    _v("BN running variance keeps the biased variance", "batch_norm_forward", "q2",
       ("momentum * var_b * m / (m - 1)", "momentum * var_b")),
    _v("BN running-mean momentum inverted", "batch_norm_forward", "q2",
       ("(1 - momentum) * running_mean + momentum * mu_b",
        "momentum * running_mean + (1 - momentum) * mu_b")),
    _v("BN statistics over the batch axis only", "batch_norm_forward", "q2",
       ("axes = [0, *range(2, x.dim())]", "axes = [0]")),
    _v("BN eval mode uses the batch statistics", "batch_norm_forward", "q2",
       ("mu_b, var_b = running_mean, running_var",
        "mu_b = x.mean(dim=axes)\n"
        "        var_b = ((x - mu_b.view(as_channels)) ** 2).mean(dim=axes)")),
    _v("BN eps outside the square root", "batch_norm_forward", "q2",
       ("/ torch.sqrt(var_b.view(as_channels) + eps)",
        "/ (torch.sqrt(var_b.view(as_channels)) + eps)")),
    _v("BN forward through F.batch_norm", "batch_norm_forward", "q2",
       ("    axes = [0, *range(2, x.dim())]",
        "    if not training:\n"
        "        out = torch.nn.functional.batch_norm(x, running_mean, running_var, gamma, "
        "beta)\n"
        "        return out, running_mean.clone(), running_var.clone()\n"
        "    axes = [0, *range(2, x.dim())]")),
    # Q3: batch norm backward
    _v("BN backward treats the batch statistics as constants", "batch_norm_backward", "q3",
       (BN_GRAD_X, "inv_std * g")),
    _v("BN backward: grad_gamma without x_hat", "batch_norm_backward", "q3",
       ("(grad_out * x_hat).sum(dim=axes)", "grad_out.sum(dim=axes)")),
    _v("BN backward with the unbiased variance", "batch_norm_backward", "q3",
       ("(centred**2).mean(dim=axes, keepdim=True)",
        "(centred**2).sum(dim=axes, keepdim=True) / (x.numel() // x.shape[1] - 1)")),
    # Q4: group norm
    _v("group norm with interleaved groups", "group_norm", "q4",
       ("per_group = x.reshape(x.shape[0], num_groups, -1)",
        "per_group = x.reshape(x.shape[0], -1, num_groups, *x.shape[2:]).transpose(1, 2)"
        ".reshape(x.shape[0], num_groups, -1)")),
    _v("group norm statistics across the batch", "group_norm", "q4",
       ("per_group - per_group.mean(dim=-1, keepdim=True)",
        "per_group - per_group.mean(dim=(0, 2), keepdim=True)"),
       ("(centred**2).mean(dim=-1, keepdim=True)", "(centred**2).mean(dim=(0, 2), keepdim=True)")),
    _v("group norm with the unbiased variance", "group_norm", "q4",
       ("(centred**2).mean(dim=-1, keepdim=True)",
        "(centred**2).sum(dim=-1, keepdim=True) / (per_group.shape[-1] - 1)")),
    # Q5: L2 penalty and weight decay
    _v("L2 penalty without the 1/2", "l2_penalty", "q5",
       ("lam / 2 * sum(", "lam * sum(")),
    _v("weight decay applied twice", "l2_penalty", "q5",
       ("return param - lr * (grad + weight_decay * param)",
        "return (1 - lr * weight_decay) * param - lr * (grad + weight_decay * param)")),
    _v("weight decay with the wrong sign", "l2_penalty", "q5",
       ("(grad + weight_decay * param)", "(grad - weight_decay * param)")),
    _v("L2 penalty returned as a Python number", "l2_penalty", "q5",
       ("return lam / 2 * sum((t**2).sum() for t in params)",
        "return float(lam / 2 * sum((t**2).sum() for t in params))")),
    # Q6: EMA
    _v("EMA with decay and 1 - decay swapped", "ema_update", "q6",
       ("decay * average + (1 - decay) * param", "(1 - decay) * average + decay * param")),
    _v("EMA started at zero", "ema_update", "q6",
       ("return param.clone()", "return (1 - decay) * param")),
]




HONEST_FORMS = {  # correct answers written differently from the solution: full marks
    "dropout_forward": """
def dropout_forward(x, p, training=True, mask=None):
    if not training:
        return x * 1.0, ()
    keep = torch.bernoulli(torch.full_like(x, 1 - p)) if mask is None else mask
    return torch.where(keep.bool(), x / (1 - p), torch.zeros_like(x)), (keep, p)


def dropout_backward(grad_out, cache):
    if not cache:
        return grad_out.clone()
    keep, p = cache
    return grad_out * keep / (1 - p)
""",
    "batch_norm_forward": """
def batch_norm_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps):
    dims = (0, *range(2, x.dim()))
    if training:
        var, mean = torch.var_mean(x, dim=dims, correction=0)
        running_mean = torch.lerp(running_mean, mean, momentum)
        running_var = torch.lerp(running_var, x.var(dim=dims, correction=1), momentum)
    else:
        mean, var = running_mean, running_var
    scale = gamma * torch.rsqrt(var + eps)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return (x * scale.view(shape) + (beta - mean * scale).view(shape),
            running_mean.clone(), running_var.clone())
""",
    "group_norm": """
group_norm = lambda x, num_groups, gamma, beta, eps: (  # noqa: E731
    torch.stack([_one_sample(s, num_groups, eps) for s in x])
    * gamma.view(1, -1, *[1] * (x.dim() - 2)) + beta.view(1, -1, *[1] * (x.dim() - 2)))


def _one_sample(sample, num_groups, eps):
    parts = [(g - g.mean()) / (g.var(correction=0) + eps).sqrt()
             for g in sample.chunk(num_groups, dim=0)]
    return torch.cat(parts, dim=0)
""",
    "ema_update": """
def ema_update(average, param, decay):
    return param.clone() if average is None else torch.lerp(param, average, decay)
""",
}

STACK_INSPECTION = '''
import sys


def ema_update(average, param, decay):
    """Looks for the grader's expected values in its callers' frames, and returns them."""
    frame = sys._getframe(1)
    while frame is not None:
        for value in list(frame.f_locals.values()):
            for attr in ("_expected", "expected", "reference"):
                try:
                    found = getattr(value, attr)
                    found = found() if callable(found) else found
                    return found[0].clone()
                except Exception:
                    pass
        frame = frame.f_back
    return param
'''

GRADER_PATCH = '''
import torch
import course_utils.grading.core as core
import course_utils.grading.probe as probe


def group_norm(x, num_groups, gamma, beta, eps):
    """Patches the grader's verdicts in the process it runs in, then returns garbage."""
    core.judge = lambda q, cases, outcomes, note="": core.QuestionResult(
        q.id, q.title, q.points, q.points, "passed")
    core.run_case = lambda case, namespace: {"value": case.expected()}
    probe.run_case = core.run_case
    return torch.zeros_like(x)
'''

SWALLOWED_HANG = swallowing_hang("def dropout_backward(grad_out, cache):")


def swallowed_hang() -> nbformat.NotebookNode:
    """The solution (questions 1-6) whose dropout backward hangs, swallowing exceptions."""
    nb = answers_only(solution())
    cell = next(c for c in nb.cells if "def dropout_backward(" in c.source)
    cell.source = cell.source[: cell.source.index("def dropout_backward(")] + \
        SWALLOWED_HANG.strip()
    return nb


__all__ = ["ASSIGNMENT", "GRADER_PATCH", "HONEST_FORMS", "SOLUTION", "STACK_INSPECTION", "VARIANTS",
           "answers_only", "replace_cell", "solution", "student", "swallowed_hang"]
