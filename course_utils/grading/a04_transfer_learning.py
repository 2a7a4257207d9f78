"""Assignment 4 -- Transfer learning: questions, tests, and their references.

Every expected value comes from torch (or scikit-learn), never from a copy of the solution:

==========================  ===========================================================
student function            reference
==========================  ===========================================================
``freeze_all_but_head``     the head's parameter names (``get_submodule(head)``); one
                            step of ``torch.optim.SGD`` on a copy of the head alone, fed
                            the head's input captured by a forward pre-hook on the model
                            in eval mode: nothing outside the head may change, buffers
                            (batch-norm running statistics) included
``replace_head``            the old head's input captured by a forward pre-hook; the new
                            model's output must be ``F.linear`` of it with the new
                            head's weights, and every other entry of the state dict must
                            be the old one
``param_groups``            ``named_parameters()`` of each stage's module, trainable ones
                            only, with the learning rate ``base_lr * decay ** k`` (``k``
                            stages below the head); the groups must be accepted by
                            ``torch.optim.SGD``
``extract_features``        ``torchvision.transforms.functional.normalize``, then the
                            model in eval mode under ``torch.no_grad()``, the head's input
                            captured by a forward pre-hook
``fit_linear_probe``        ``sklearn.linear_model.LogisticRegression`` (multinomial,
                            L-BFGS) with ``C = 1 / (weight_decay * n)``: the same convex
                            objective, so the same predicted probabilities
==========================  ===========================================================

The test networks are small and built from the course's zoo (``course_utils.models``): a
ResNet-style stack of ``BasicBlock`` stages with the head ``fc``, the zoo's ``plain_cnn``
with batch norm (its head is the ``Sequential``'s last index) and ``lenet_bn`` (a nested
head, ``classifier.7``, with ``BatchNorm1d`` layers before it). Their batch-norm statistics
and affine parameters are drawn from the seed far from their defaults, so a batch norm in
the wrong mode changes every number. Sizes, learning rates, the decay, the number of
classes and every input are drawn from the seed.

Grading policy (stated in the notebook): no answer may use the course's own transfer helpers
(``course_utils.transfer``); the linear probe is fitted with torch, not scikit-learn.
"""

from __future__ import annotations

import copy
import functools
import reprlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .core import (
    Assignment,
    Case,
    Question,
    StudentError,
    call_student,
    compare_tensor,
    describe_exception,
    student_function,
)
from .draw import generator, log_uniform, randint, uniform

MOMENTUM = 0.9  # the SGD momentum question 1 asks for (its first step equals plain SGD's)
CALL = "the call above"  # the test's label shows the call; an error message need not repeat it


def _hint(text: str) -> str:
    return f". Hint: {text}" if text else ""


def _shown(names: list[str], n: int = 3) -> str:
    quoted = ", ".join(f"`{x}`" for x in names[:n])
    return quoted + (f" and {len(names) - n} more" if len(names) > n else "")


# --------------------------------------------------------------------------------------
# The test networks
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Net:
    """A small network with batch norm, built the same way in every process from ``seed``."""

    kind: str  # "resnet", "cifar", "plain" or "lenet"
    in_channels: int
    num_classes: int
    size: int  # image height and width
    width: int
    depth: int  # residual stages (resnet) or convolutions (plain)
    seed: int

    @property
    def head(self) -> str:
        return {"resnet": "fc", "cifar": "fc", "plain": str(3 * self.depth + 2),
                "lenet": "classifier.7"}[self.kind]

    @property
    def stages(self) -> list[str | tuple[str, ...]]:
        """Module names (a tuple for a stage of several modules) from the input to the head
        that hold every parameter (the ResNets only)."""
        if self.kind == "cifar":  # the zoo's CIFAR ResNet-8: one block per stage
            return [("conv1", "bn1"), "blocks.0", "blocks.1", "blocks.2", "fc"]
        if self.kind != "resnet":
            raise ValueError("only the ResNet-style test networks have stages")
        return ["stem", *[f"layer{i + 1}" for i in range(self.depth)], "fc"]

    def describe(self) -> str:
        c, s = self.in_channels, self.size
        what = {"resnet": f"a small ResNet (stem, {self.depth} residual stages, head `fc`)",
                "cifar": f"the zoo's cifar_resnet(depth=8, width={self.width}) (head `fc`)",
                "plain": f"plain_cnn(depth={self.depth}, norm='batch') (head `{self.head}`)",
                "lenet": "lenet_bn (head `classifier.7`)"}[self.kind]
        return f"{what}, {self.num_classes} classes, {c}x{s}x{s} images"

    def build(self) -> nn.Module:
        """The network in training mode (as a freshly built one is), its batch-norm
        statistics and affine parameters drawn far from their defaults."""
        from course_utils import models

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            if self.kind == "resnet":
                model = _resnet_like(self.in_channels, self.num_classes, self.width, self.depth)
            elif self.kind == "cifar":
                model = models.cifar_resnet(8, self.in_channels, self.num_classes,
                                            width=self.width)
            elif self.kind == "plain":
                model = models.plain_cnn(self.in_channels, self.num_classes, depth=self.depth,
                                         width=self.width, norm="batch")
            else:
                model = models.lenet_bn(self.in_channels, self.num_classes,
                                        image_size=self.size, activation="relu")
        gen = torch.Generator().manual_seed(self.seed + 7)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.5)
                    m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                    m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                    m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.5)
        return model.train()


def _resnet_like(c: int, k: int, w: int, depth: int) -> nn.Sequential:
    from course_utils.models import BasicBlock, conv1x1

    layers: OrderedDict[str, nn.Module] = OrderedDict(
        stem=nn.Sequential(nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w),
                           nn.ReLU()))
    cin = w
    for i in range(depth):
        cout, stride = w * 2**i, 1 if i == 0 else 2
        down = None if stride == 1 and cin == cout else nn.Sequential(
            conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))
        layers[f"layer{i + 1}"] = BasicBlock(cin, cout, stride, down)
        cin = cout
    layers["pool"] = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    layers["fc"] = nn.Linear(cin, k)
    return nn.Sequential(layers)


def _nets(gen: torch.Generator, seed: int, salt: int) -> list[Net]:
    """One network of each kind, sizes drawn from ``gen``."""
    base = seed * 1000 + salt * 10
    return [  # the head's input (8 to 12 features, 84) never equals the classes (3 to 7)
        Net("resnet", randint(gen, 1, 3), randint(gen, 3, 7), randint(gen, 8, 12),
            randint(gen, 4, 6), 2, base + 1),
        Net("plain", randint(gen, 1, 3), randint(gen, 3, 7), randint(gen, 8, 12),
            randint(gen, 8, 12), randint(gen, 3, 4), base + 2),
        Net("lenet", randint(gen, 1, 3), randint(gen, 3, 7), 16, 0, 0, base + 3),
    ]


def _head_names(model: nn.Module, head: str, what: str = "parameters") -> list[str]:
    sub = model.get_submodule(head)
    items = sub.named_parameters() if what == "parameters" else sub.state_dict().items()
    return [f"{head}.{name}" for name, _ in items]


def _head_input(model: nn.Module, head: str, x: torch.Tensor) -> torch.Tensor:
    """What the head receives when ``model`` runs on ``x`` (a forward pre-hook)."""
    store: dict[str, torch.Tensor] = {}

    def hook(module: nn.Module, args: tuple) -> None:
        store["x"] = args[0].detach().clone()

    handle = model.get_submodule(head).register_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return store["x"]


def _names_by_id(model: nn.Module) -> dict[int, str]:
    return {id(p): name for name, p in model.named_parameters()}


def _images(gen: torch.Generator, net: Net, batch: int) -> torch.Tensor:
    return torch.rand(batch, net.in_channels, net.size, net.size, generator=gen)


# --------------------------------------------------------------------------------------
# Q1: freeze all but the head, and an optimizer for what is left
# --------------------------------------------------------------------------------------

def _freeze(ns: Mapping[str, Any], net: Net, lr: float) -> tuple[nn.Module, Any, str]:
    fn = student_function(ns, "freeze_all_but_head")
    model = net.build()
    where = f"freeze_all_but_head(model, {net.head!r}, lr={lr:.4g}) on {net.describe()}"
    try:
        opt = call_student(fn, CALL, model, net.head, lr=lr)
    except StudentError as error:
        if "empty parameter list" not in str(error):
            raise
        raise StudentError(f"{error}. Hint: no parameter is left to train. requires_grad is a "
                           "flag of each parameter tensor: module.requires_grad_(True) sets it "
                           "on all of them, setting an attribute on a module does "
                           "nothing") from None
    return model, opt, where


def _check_optimizer(opt: Any, where: str) -> torch.optim.Optimizer:
    if not isinstance(opt, torch.optim.Optimizer):
        extra = " (did you forget `return`?)" if opt is None else ""
        raise StudentError(f"`freeze_all_but_head` should return the optimizer "
                           f"(a torch.optim.SGD), got {type(opt).__name__}{extra}")
    return opt


def _trainable_case(net: Net, lr: float) -> Case:
    def run(ns: Mapping[str, Any]) -> list[str]:
        model, _, _ = _freeze(ns, net, lr)
        return [name for name, p in model.named_parameters() if p.requires_grad]

    def reference() -> list[str]:
        return _head_names(net.build(), net.head)

    def compare(got: Any, expected: list[str]) -> str | None:
        if not isinstance(got, list):
            return f"expected a list of names, got {reprlib.repr(got)}"
        extra = [n for n in got if n not in expected]
        missing = [n for n in expected if n not in got]
        if extra:
            bn = [n for n in extra if ".weight" in n or ".bias" in n]
            return (f"{len(extra)} parameters outside the head still have requires_grad=True: "
                    f"{_shown(extra)}" + _hint(
                        "set requires_grad=False on every parameter of the model that is not "
                        "in the head -- batch-norm weights and biases too" if bn else ""))
        if missing:
            return (f"the head's parameters {_shown(missing)} have requires_grad=False: the "
                    f"head `{net.head}` must stay trainable. Hint: requires_grad is a flag of "
                    "each parameter tensor (setting it on a module does nothing)")
        return None

    return Case(f"requires_grad after freezing, on {net.describe()}", run, reference, compare)


def _optimizer_case(net: Net, lr: float) -> Case:
    def run(ns: Mapping[str, Any]) -> dict[str, Any]:
        model, opt, where = _freeze(ns, net, lr)
        opt = _check_optimizer(opt, where)
        names = _names_by_id(model)
        held = [names.get(id(p), "<a tensor that is not a parameter of the model>")
                for g in opt.param_groups for p in g["params"]]
        frozen = [names[id(p)] for g in opt.param_groups for p in g["params"]
                  if id(p) in names and not p.requires_grad]
        return {"type": type(opt).__name__, "params": held, "frozen": frozen,
                "lr": [float(g["lr"]) for g in opt.param_groups],
                "momentum": [float(g.get("momentum", 0.0)) for g in opt.param_groups]}

    def reference() -> list[str]:
        return _head_names(net.build(), net.head)

    def compare(got: Any, expected: list[str]) -> str | None:
        if not isinstance(got, dict):
            return f"expected the optimizer's description, got {reprlib.repr(got)}"
        if got["type"] != "SGD":
            return f"the optimizer is a {got['type']}, expected torch.optim.SGD"
        if got["frozen"]:
            return (f"the optimizer holds {len(got['frozen'])} frozen parameters "
                    f"(requires_grad=False), e.g. {_shown(got['frozen'], 2)}: it only needs "
                    f"the head's {len(expected)}. Hint: build the optimizer after freezing, "
                    "over the parameters that still require a gradient")
        missing = [n for n in expected if n not in got["params"]]
        extra = [n for n in got["params"] if n not in expected]
        if missing:
            return f"the optimizer does not hold the head's parameters {_shown(missing)}"
        if extra:
            return f"the optimizer holds parameters outside the head: {_shown(extra)}"
        if any(abs(x - lr) > 1e-12 * lr for x in got["lr"]):
            return f"the optimizer's learning rate is {got['lr']}, expected {lr:.6g}"
        if any(abs(m - MOMENTUM) > 1e-12 for m in got["momentum"]):
            return f"the optimizer's momentum is {got['momentum']}, expected {MOMENTUM}"
        return None

    return Case(f"the returned optimizer, on {net.describe()}", run, reference, compare)


def _step_case(net: Net, lr: float, x: torch.Tensor, y: torch.Tensor) -> Case:
    def run(ns: Mapping[str, Any]) -> dict[str, Any]:
        model, opt, where = _freeze(ns, net, lr)
        opt = _check_optimizer(opt, where)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        opt.zero_grad()
        loss = F.cross_entropy(model(x.clone()), y)
        if not loss.requires_grad:
            raise StudentError(f"no parameter requires a gradient after freezing: "
                               f"the head `{net.head}` must stay trainable")
        loss.backward()
        opt.step()
        after = model.state_dict()
        changed = [k for k, v in after.items() if k in before and not torch.equal(v, before[k])]
        head = set(_head_names(model, net.head, "state"))
        return {"changed": changed,
                "head": {k: v.clone() for k, v in after.items() if k in head}}

    def reference() -> dict[str, Any]:
        model = net.build().eval()  # the frozen part: running statistics, nothing updated
        features = _head_input(model, net.head, x)
        head = copy.deepcopy(model.get_submodule(net.head)).train()
        opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=MOMENTUM)
        F.cross_entropy(head(features), y).backward()
        opt.step()
        return {f"{net.head}.{k}": v.detach().clone() for k, v in head.state_dict().items()}

    def compare(got: Any, expected: dict[str, torch.Tensor]) -> str | None:
        if not isinstance(got, dict) or not isinstance(got.get("head"), dict):
            return f"expected the changed entries, got {reprlib.repr(got)}"
        outside = [k for k in got["changed"] if k not in expected]
        stats = [k for k in outside if k.rsplit(".", 1)[-1] in (
            "running_mean", "running_var", "num_batches_tracked")]
        if stats:
            return (f"one training step changed {_shown(stats, 2)} outside the head: a frozen "
                    "batch-norm layer left in training mode still updates its running "
                    "statistics (and normalizes with the batch's). Hint: put the frozen part "
                    "of the network in eval mode, the head in train mode")
        if outside:
            return (f"one training step changed {_shown(outside)}, outside the head: those "
                    "parameters are not frozen")
        if not got["changed"]:
            return ("one training step changed nothing: the head must be trainable and in the "
                    "optimizer")
        for key, value in expected.items():
            message = compare_tensor(got["head"].get(key), value,
                                     what=f"after one step, {key}", hint=(
                                         "the frozen part runs in eval mode (batch norm uses "
                                         "its running statistics); the head takes one SGD "
                                         "step with the given lr"), rtol=1e-4, atol=1e-5)
            if message:
                return message
        return None

    label = (f"one SGD step (cross-entropy, batch of {len(y)}) after freezing, on "
             f"{net.describe()}: only the head may change")
    return Case(label, run, reference, compare, weight=2.0)


def _freeze_cases(seed: int) -> list[Case]:
    gen = generator(seed, 1)
    cases = []
    for net in _nets(gen, seed, 1):
        lr = log_uniform(gen, 0.01, 0.5)
        x = _images(gen, net, 6)
        y = torch.randint(0, net.num_classes, (6,), generator=gen)
        cases += [_trainable_case(net, lr), _optimizer_case(net, lr), _step_case(net, lr, x, y)]
    return cases


# --------------------------------------------------------------------------------------
# Q2: replace the head
# --------------------------------------------------------------------------------------

def _replace_case(net: Net, num_classes: int, x: torch.Tensor, frozen: bool) -> Case:
    where = (f"replace_head(model, {net.head!r}, num_classes={num_classes}) on "
             f"{net.describe()}" + (", every parameter frozen" if frozen else ""))

    def run(ns: Mapping[str, Any]) -> dict[str, Any]:
        fn = student_function(ns, "replace_head")
        model = net.build()
        if frozen:
            model.requires_grad_(False)
        in_features = model.get_submodule(net.head).in_features
        modules_before = {name for name, _ in model.named_modules()}
        new = call_student(fn, CALL, model, net.head, num_classes)
        if not isinstance(new, nn.Module):
            extra = " (did you forget `return model`?)" if new is None else ""
            raise StudentError(f"`replace_head` should return the model (an "
                               f"nn.Module), got {type(new).__name__}{extra}")
        if isinstance(new, nn.Linear) and not isinstance(model, nn.Linear):
            raise StudentError(f"`replace_head` should return the model (the whole network, "
                               f"with its new head), got a single {type(new).__name__}"
                               f"({new.in_features}, {new.out_features}): return model")
        try:
            head = new.get_submodule(net.head)
        except AttributeError:
            raise StudentError(f"the returned model has no module `{net.head}` any "
                               "more: put the new head where the old one was") from None
        inside = (net.head, net.head + ".")
        added = [name for name, _ in new.named_modules()
                 if name not in modules_before and not name.startswith(inside)]
        if added:
            parent, _, last = net.head.rpartition(".")
            raise StudentError(
                f"the model gained a module `{added[0]}` that it did not have, and the forward "
                f"pass runs it too (setting a new attribute on an nn.Sequential appends a "
                f"layer). Hint: replace the module `{net.head}` itself, on its parent ("
                f"{'the model itself' if not parent else f'`{parent}`'}): "
                f"setattr(parent, {last!r}, new_layer)")
        if not isinstance(head, nn.Linear):
            raise StudentError(f"the module at `{net.head}` should be one nn.Linear, "
                               f"got {type(head).__name__} (no softmax: the loss applies it)")
        if head.in_features != in_features:
            raise StudentError(f"the new head should take the {in_features} features the "
                               f"body gives each image, but takes {head.in_features}: "
                               f"nn.Linear(old_head.in_features, num_classes)")
        new.eval()
        try:
            with torch.no_grad():
                logits = new(x.clone())
        except Exception as error:  # noqa: BLE001 - the student's model; its error is feedback
            raise StudentError(f"the returned model fails on a batch of shape "
                               f"{tuple(x.shape)}: {describe_exception(error)}") from None
        if not isinstance(logits, torch.Tensor):
            raise StudentError("the model's output should be a tensor")
        head_keys = set(_head_names(new, net.head, "state"))
        return {"logits": logits, "weight": head.weight.detach().clone(),
                "bias": None if head.bias is None else head.bias.detach().clone(),
                "head_trainable": all(p.requires_grad for p in head.parameters()),
                "body": {k: v.clone() for k, v in new.state_dict().items()
                         if k not in head_keys}}

    def reference() -> dict[str, Any]:
        model = net.build().eval()
        head_keys = set(_head_names(model, net.head, "state"))
        return {"features": _head_input(model, net.head, x),
                "old_classes": net.num_classes,
                "body": {k: v.clone() for k, v in model.state_dict().items()
                         if k not in head_keys}}

    def compare(got: Any, expected: dict[str, Any]) -> str | None:
        if not isinstance(got, dict) or not isinstance(got.get("logits"), torch.Tensor):
            return f"expected the model's output, got {reprlib.repr(got)}"
        features = expected["features"]
        batch, d = features.shape
        logits = got["logits"]
        if logits.shape != (batch, num_classes):
            still = logits.ndim == 2 and logits.shape[1] == expected["old_classes"]
            return (f"the model's output has shape {tuple(logits.shape)}, expected "
                    f"{(batch, num_classes)}" + _hint(
                        f"the layer `{net.head}` that the forward pass uses was not replaced: "
                        "changing `out_features` does not resize a layer, and for a nested "
                        "name the new layer must be set on its parent module" if still else
                        "a new nn.Linear(in_features, num_classes)"))
        weight = got["weight"]
        if tuple(weight.shape) != (num_classes, d):
            return (f"the new head's weight has shape {tuple(weight.shape)}, expected "
                    f"{(num_classes, d)}: nn.Linear({d}, {num_classes})")
        if got["bias"] is None:
            return "the new head has no bias: nn.Linear's default (bias=True) is expected"
        if not got["head_trainable"]:
            return "the new head's parameters have requires_grad=False: the new head must train"
        body = got["body"]
        if set(body) != set(expected["body"]):
            differ = sorted(set(body) ^ set(expected["body"]))
            return f"the rest of the model changed its layers: {_shown(differ)}"
        for key, value in expected["body"].items():
            if not torch.equal(body[key], value):
                return (f"`{key}` changed: everything but the head must keep its pretrained "
                        "values")
        return compare_tensor(logits, F.linear(features, weight, got["bias"]),
                              what="the output", hint=(
                                  "the output should be the new head applied to what the old "
                                  "head received"), rtol=1e-4, atol=1e-5)

    return Case(where, run, reference, compare)


def _replace_cases(seed: int) -> list[Case]:
    gen = generator(seed, 2)
    cases = []
    nets = _nets(gen, seed, 2)
    for i, net in enumerate([*nets, nets[0]]):
        num_classes = randint(gen, 2, 12)
        while num_classes == net.num_classes:
            num_classes = randint(gen, 2, 12)
        cases.append(_replace_case(net, num_classes, _images(gen, net, 4), frozen=i == 3))
    return cases


# --------------------------------------------------------------------------------------
# Q3: parameter groups with discriminative learning rates
# --------------------------------------------------------------------------------------

def _stage_label(stage: str | tuple[str, ...]) -> str:
    return f"`{stage}`" if isinstance(stage, str) else "(" + ", ".join(
        f"`{n}`" for n in stage) + ")"


def _stage_modules(stage: str | tuple[str, ...]) -> list[str]:
    return [stage] if isinstance(stage, str) else list(stage)


def _groups_case(net: Net, base_lr: float, decay: float, n_frozen: int) -> Case:
    stages = net.stages
    frozen_text = ", ".join(_stage_label(st) for st in stages[:n_frozen])
    where = (f"param_groups(model, {stages}, base_lr={base_lr:.4g}, decay={decay:.3g}) on "
             f"{net.describe()}" + (f", {frozen_text} frozen" if n_frozen else ""))

    def run(ns: Mapping[str, Any]) -> dict[str, float]:
        fn = student_function(ns, "param_groups")
        model = net.build()
        for stage in stages[:n_frozen]:
            for name in _stage_modules(stage):
                model.get_submodule(name).requires_grad_(False)
        try:
            groups = call_student(fn, CALL, model, list(stages), base_lr=base_lr, decay=decay)
        except StudentError as error:
            if "tuple" not in str(error):
                raise
            raise StudentError(f"{error}. Hint: a stage is a module name or a tuple of module "
                               "names, e.g. ('conv1', 'bn1'): take the parameters of every "
                               "module it names") from None
        if not isinstance(groups, (list, tuple)) or not all(
                isinstance(g, dict) and "params" in g and "lr" in g for g in groups):
            raise StudentError(f"`param_groups` should return a list of dicts, each with "
                               f"'params' and 'lr', got {reprlib.repr(groups)}")
        try:
            groups = [dict(g, params=list(g["params"])) for g in groups]
            torch.optim.SGD(groups, lr=base_lr)
        except (TypeError, ValueError) as error:
            hint = (" Hint: each parameter belongs to exactly one stage, so to one group"
                    if "more than one" in str(error) else "")
            raise StudentError(f"torch.optim.SGD does not accept your groups: {error}.{hint}"
                               ) from None
        names = _names_by_id(model)
        lrs: dict[str, float] = {}
        for g in groups:
            for p in g["params"]:
                if id(p) not in names:
                    raise StudentError("a group holds a tensor that is not a parameter of the "
                                       "model")
                lrs[names[id(p)]] = float(g["lr"])
        return lrs

    def reference() -> dict[str, Any]:
        model = net.build()
        expected: dict[str, tuple[float, int, str]] = {}
        frozen = []
        for k, stage in enumerate(reversed(stages)):  # k stages below the head
            for name in _stage_modules(stage):
                for pname, _ in model.get_submodule(name).named_parameters():
                    full = f"{name}.{pname}"
                    if len(stages) - 1 - k < n_frozen:
                        frozen.append(full)
                    else:
                        expected[full] = (base_lr * decay**k, k, _stage_label(stage))
        return {"lr": expected, "frozen": frozen}

    def compare(got: Any, expected: dict[str, Any]) -> str | None:
        if not isinstance(got, dict):
            return f"expected learning rates by parameter, got {reprlib.repr(got)}"
        frozen = [n for n in got if n in expected["frozen"]]
        if frozen:
            return (f"frozen parameters (requires_grad=False) are in the groups: "
                    f"{_shown(frozen)}. Hint: leave them out; a stage with nothing trainable "
                    "gets no group")
        missing = [n for n in expected["lr"] if n not in got]
        if missing:
            return (f"{len(missing)} trainable parameters are in no group, e.g. "
                    f"{_shown(missing, 2)}" + _hint(
                        "each stage's parameters are all those of its modules (batch norm's "
                        "too): model.get_submodule(name).parameters()"))
        for pname, (lr, k, label) in expected["lr"].items():  # from the head down
            if not isinstance(got[pname], float) or abs(got[pname] - lr) > 1e-9 * lr:
                return (f"stage {label} ({k} below the head) has learning rate "
                        f"{got[pname]:.4g}, expected {lr:.4g} = base_lr * decay^{k}. Hint: "
                        "the head gets the largest learning rate, base_lr, and each stage "
                        "below it `decay` times less than the stage above it")
        return None

    return Case(where, run, reference, compare)


def _groups_cases(seed: int) -> list[Case]:
    gen = generator(seed, 3)
    cases = []
    for kind, depth, n_frozen in (("resnet", 2, 0), ("cifar", 0, 0), ("resnet", 3, 2)):
        net = Net(kind, randint(gen, 1, 3), randint(gen, 3, 9), 8, randint(gen, 2, 4),
                  depth, seed * 1000 + 30 + depth + n_frozen)
        cases.append(_groups_case(net, log_uniform(gen, 1e-3, 0.1),
                                  round(uniform(gen, 0.1, 0.5), 3), n_frozen))
    return cases


# --------------------------------------------------------------------------------------
# Q4: feature extraction in eval mode
# --------------------------------------------------------------------------------------

def _normalized(x: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    from torchvision.transforms.functional import normalize

    return normalize(x.clone(), mean, std)


def _features_case(net: Net, x: torch.Tensor, mean: list[float], std: list[float]) -> Case:
    shown_mean = "[" + ", ".join(f"{m:.3f}" for m in mean) + "]"
    shown_std = "[" + ", ".join(f"{s:.3f}" for s in std) + "]"
    where = (f"extract_features(model, {net.head!r}, images of shape {tuple(x.shape)}, "
             f"mean={shown_mean}, std={shown_std}) on {net.describe()}")

    def run(ns: Mapping[str, Any]) -> dict[str, Any]:
        fn = student_function(ns, "extract_features")
        model = net.build()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        out = call_student(fn, CALL, model, net.head, x.clone(), list(mean), list(std))
        if not isinstance(out, torch.Tensor):
            raise StudentError(f"`extract_features` should return a tensor, got "
                               f"{type(out).__name__}")
        changed = [k for k, v in model.state_dict().items()
                   if k in before and not torch.equal(v, before[k])]
        return {"features": out, "requires_grad": bool(out.requires_grad), "changed": changed}

    def reference() -> dict[str, Any]:
        model = net.build().eval()
        expected = {"features": _head_input(model, net.head, _normalized(x, mean, std)),
                    "raw": _head_input(model, net.head, x)}
        with torch.no_grad():
            expected["logits"] = model(_normalized(x, mean, std))
        try:
            expected["train"] = _head_input(net.build().train(), net.head,
                                            _normalized(x, mean, std))
        except (RuntimeError, ValueError):  # batch norm refuses one value per channel
            expected["train"] = None
        return expected

    def compare(got: Any, expected: dict[str, Any]) -> str | None:
        if not isinstance(got, dict) or not isinstance(got.get("features"), torch.Tensor):
            return f"expected features, got {reprlib.repr(got)}"
        feats = got["features"]
        if got["changed"]:
            return (f"extracting features changed {_shown(got['changed'], 2)}: the model ran in "
                    "training mode, so its batch norms updated their running statistics. "
                    "Hint: model.eval() before the forward pass")
        if got["requires_grad"]:
            return ("the features require a gradient: they keep the whole autograd graph in "
                    "memory. Hint: run the forward pass under torch.no_grad()")
        ref = expected["features"]
        if feats.shape != ref.shape:
            after = feats.shape == expected["logits"].shape
            return (f"the features have shape {tuple(feats.shape)}, expected "
                    f"{tuple(ref.shape)}" + _hint(
                        "these are the head's outputs (the logits): take what goes *into* "
                        "the head" if after else "one flat vector per image, what the head "
                        "receives"))
        for alt, hint in (("raw", "your features match the network run on the raw images: "
                           "normalize each channel with the source model's mean and std first"),
                          ("train", "your features match the network in training mode (batch "
                           "statistics): call model.eval() first")):
            alt_value = expected[alt]
            if (alt_value is not None and not torch.allclose(alt_value, ref, atol=1e-4)
                    and torch.allclose(feats.double(), alt_value.double(), rtol=1e-4,
                                       atol=1e-5)):
                return "the features differ from the reference. Hint: " + hint
        return compare_tensor(feats, ref, what="features", hint=(
            "normalize with (x - mean) / std per channel, model in eval mode, and take the "
            "head's input"), rtol=1e-4, atol=1e-5)

    return Case(where, run, reference, compare)


def _features_cases(seed: int) -> list[Case]:
    gen = generator(seed, 4)
    cases = []
    nets = _nets(gen, seed, 4)
    for net, batch in ((nets[0], 5), (nets[1], 4), (nets[2], 3), (nets[2], 1)):
        mean = [round(uniform(gen, 0.2, 0.6), 3) for _ in range(net.in_channels)]
        std = [round(uniform(gen, 0.15, 0.35), 3) for _ in range(net.in_channels)]
        cases.append(_features_case(net, _images(gen, net, batch), mean, std))
    return cases


# --------------------------------------------------------------------------------------
# Q5: a linear probe
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProbeData:
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    num_classes: int
    weight_decay: float


def _probe_data(gen: torch.Generator) -> ProbeData:
    k, d, per_class = randint(gen, 3, 5), randint(gen, 4, 12), randint(gen, 8, 16)
    means = torch.randn(k, d, generator=gen) * 1.2 + torch.randn(d, generator=gen) * 2

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % k
        return means[y] + torch.randn(n, d, generator=gen), y

    train_x, train_y = draw(k * per_class)
    test_x, _ = draw(12)
    return ProbeData(train_x, train_y, test_x, k, round(log_uniform(gen, 0.01, 0.1), 4))


def _sklearn_probe(data: ProbeData, c: float, penalize_bias: bool = False,
                   objective: bool = False) -> Any:
    """Test-point probabilities of scikit-learn's logistic regression with inverse penalty
    ``c`` (``penalize_bias``: the bias as the weight of a constant feature, penalized);
    with ``objective``, also the notebook's objective at the fitted weights."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x, x_test = data.train_x.double().numpy(), data.test_x.double().numpy()
    if penalize_bias:
        x, x_test = (np.hstack([a, np.ones((len(a), 1))]) for a in (x, x_test))
    model = LogisticRegression(C=c, tol=1e-10, max_iter=10_000, fit_intercept=not penalize_bias)
    model.fit(x, data.train_y.numpy())
    p = torch.from_numpy(model.predict_proba(x_test))
    if not objective:
        return p
    weight, bias = torch.from_numpy(model.coef_), torch.from_numpy(model.intercept_)
    return p, _probe_objective(data, weight, bias)


def _probe_objective(data: ProbeData, weight: torch.Tensor, bias: torch.Tensor) -> float:
    """The notebook's objective: mean cross-entropy + weight_decay / 2 * ||W||^2."""
    logits = data.train_x.double() @ weight.double().T + bias.double()
    return float(F.cross_entropy(logits, data.train_y)
                 + data.weight_decay / 2 * weight.double().square().sum())


# Classic mistakes in the probe's objective, as scikit-learn's C for the same data (N
# examples, penalty weight lambda): the message names the one a student's answer matches.
PROBE_MISTAKES = {
    "the bias is penalized too (the penalty covers the weights W only)":
        lambda lam, n: (1.0 / (lam * n), True),
    "the penalty is weight_decay * ||W||^2 (it is weight_decay / 2 * ||W||^2)":
        lambda lam, n: (1.0 / (2 * lam * n), False),
    "the cross-entropy is summed over the examples (it is the mean)":
        lambda lam, n: (1.0 / lam, False),
}


def _probe_reference(data: ProbeData) -> dict[str, Any]:
    """Class probabilities on the test features of the penalized logistic regression, and
    what the classic mistakes give."""
    lam, n = data.weight_decay, len(data.train_y)
    p, best = _sklearn_probe(data, 1.0 / (lam * n), objective=True)
    return {"p": p, "objective": best,
            "mistakes": {why: _sklearn_probe(data, *spec(lam, n))
                         for why, spec in PROBE_MISTAKES.items()}}


def _probe_case(data: ProbeData) -> Case:
    n, d = data.train_x.shape
    where = (f"fit_linear_probe(features of shape {(n, d)}, labels, num_classes="
             f"{data.num_classes}, weight_decay={data.weight_decay:g})")

    def run(ns: Mapping[str, Any]) -> torch.Tensor:
        fn = student_function(ns, "fit_linear_probe")
        probe = call_student(fn, CALL, data.train_x.clone(), data.train_y.clone(),
                             data.num_classes, weight_decay=data.weight_decay)
        if not isinstance(probe, nn.Linear) or probe.weight.shape != (data.num_classes, d):
            raise StudentError(f"`fit_linear_probe` should return the fitted "
                               f"nn.Linear({d}, {data.num_classes}), got "
                               f"{reprlib.repr(probe)}")
        if probe.bias is None:
            raise StudentError("the probe should have a bias (b in the objective, which the "
                               "penalty leaves out); it has none")
        with torch.no_grad():
            return {"p": torch.softmax(probe(data.test_x.clone()).double(), dim=1),
                    "weight": probe.weight.detach().double().clone(),
                    "bias": probe.bias.detach().double().clone()}

    def compare(got: Any, expected: dict[str, Any]) -> str | None:
        if not isinstance(got, dict) or not all(
                isinstance(got.get(k), torch.Tensor) for k in ("p", "weight", "bias")):
            return f"expected the probe's probabilities, got {reprlib.repr(got)}"
        best, p = expected["p"], got["p"]
        message = compare_tensor(p, best, what="the probe's probability p", atol=5e-3, rtol=0)
        if message is None or p.shape != best.shape:
            return message
        for why, wrong in expected["mistakes"].items():
            if (not torch.allclose(wrong, best, atol=5e-3, rtol=0)
                    and torch.allclose(p.double(), wrong, atol=2e-3, rtol=0)):
                return message + f". Hint: your probe is the optimum of another objective: {why}"
        if got["weight"].shape != (data.num_classes, d) or got["bias"].shape != (
                data.num_classes,):
            return message
        value = _probe_objective(data, got["weight"], got["bias"])
        return (message + f". Your probe's value of the objective above on the training "
                f"features is {value:.6g}, its minimum {expected['objective']:.6g}. Hint: if "
                "your loss is exactly that objective, run the optimizer to convergence: "
                "full-batch L-BFGS (its step runs at most max_iter iterations, 20 by default: "
                "allow a few hundred); first-order optimizers such as Adam rarely get within "
                "0.005. Otherwise compare your loss with the formula: the *mean* "
                "cross-entropy plus weight_decay / 2 * ||W||^2, the bias not penalized")

    label = where + f", then the probe's class probabilities on {len(data.test_x)} new points"
    return Case(label, run, functools.partial(_probe_reference, data), compare)


def _probe_cases(seed: int) -> list[Case]:
    gen = generator(seed, 5)
    return [_probe_case(_probe_data(gen)) for _ in range(3)]


# --------------------------------------------------------------------------------------
# The assignment
# --------------------------------------------------------------------------------------

# The grader blocks the union of these lists while it tests any question: nothing here may
# be needed by another question's tests (torch.optim, torch.nn and the model zoo stay usable).
# Not all of scikit-learn: blocking the whole package also blocks ``enum.Enum.__new__`` (its
# enums hold a reference to it), which breaks the grader's own process.
HELPERS = ("course_utils.transfer",)
PROBE_LIBRARIES = ("course_utils.transfer", "sklearn.linear_model")

ASSIGNMENT = Assignment(
    id="04_transfer_learning",
    title="Assignment 4 -- Transfer learning",
    questions=[
        Question("q1", "Freeze all but the head", 20, _freeze_cases, ("freeze_all_but_head",),
                 forbidden=HELPERS),
        Question("q2", "Replace the head", 15, _replace_cases, ("replace_head",),
                 forbidden=HELPERS),
        Question("q3", "Discriminative learning rates", 15, _groups_cases, ("param_groups",),
                 forbidden=HELPERS),
        Question("q4", "Feature extraction in eval mode", 15, _features_cases,
                 ("extract_features",), forbidden=HELPERS),
        Question("q5", "A linear probe", 15, _probe_cases, ("fit_linear_probe",),
                 forbidden=PROBE_LIBRARIES),
        Question("q6", "Reading your own 2x2 transfer table", 20,
                 manual_note="The instructor reads your table and your answer (rubric in "
                             "the solution notebook)."),
    ],
)
