"""Assignment 4's wrong answers: solutions/04_transfer_learning.ipynb with one classic bug typed in.

The variants use ``grading_fixtures``' machinery (``Variant``, ``with_bug``), so they follow
the solution when it changes; a substitution that no longer matches fails loudly.
"""

from __future__ import annotations

from grading_fixtures import AssignmentFiles, Variant, _v, swallowing_hang

FILES = AssignmentFiles("04_transfer_learning", 'check("q5")')
SOLUTION, ASSIGNMENT = FILES.solution_path, FILES.assignment_path
solution, student, answers_only = FILES.solution, FILES.student, FILES.answers_only

VARIANTS: list[Variant] = [
    # q1: freeze all but the head
    _v("BN left in train mode while frozen", "freeze_all_but_head", "q1",
       ("    model.eval()  # the frozen batch norms use and keep the source's statistics\n", "")),
    _v("optimizer built before freezing (still holds frozen parameters)",
       "freeze_all_but_head", "q1",
       ("    head = model.get_submodule(head_name)\n",
        "    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)\n"
        "    head = model.get_submodule(head_name)\n"),
       ("return torch.optim.SGD(still_trainable, lr=lr, momentum=0.9)", "return opt")),
    _v("requires_grad set on the head module, not on its parameters", "freeze_all_but_head",
       "q1", ("head.requires_grad_(True)", "head.requires_grad = True")),
    _v("only the convolutions frozen (batch-norm and linear layers still train)",
       "freeze_all_but_head", "q1",
       ("    model.requires_grad_(False)  # every parameter, the head's included ...\n",
        "    for m in model.modules():\n"
        "        if isinstance(m, nn.Conv2d):\n"
        "            m.requires_grad_(False)\n")),
    _v("learning rate not passed to the optimizer", "freeze_all_but_head", "q1",
       ("SGD(still_trainable, lr=lr, momentum=0.9)", "SGD(still_trainable, lr=0.1, momentum=0.9)")),
    _v("freezing through the course's transfer helper", "freeze_all_but_head", "q1",
       ("def freeze_all_but_head(", "from course_utils import transfer\n\n\n"
        "def freeze_all_but_head("),
       ("    head = model.get_submodule(head_name)\n",
        "    transfer.freeze(model)  # the course's helper\n"
        "    head = model.get_submodule(head_name)\n")),
    _v("SGD without momentum", "freeze_all_but_head", "q1",
       ("SGD(still_trainable, lr=lr, momentum=0.9)", "SGD(still_trainable, lr=lr)")),
    # q2: replace the head
    _v("head not replaced (only out_features changed)", "replace_head", "q2",
       ("    setattr(parent, attribute, nn.Linear(old_head.in_features, num_classes))\n",
        "    old_head.out_features = num_classes\n")),
    _v("new head sized by the old head's outputs", "replace_head", "q2",
       ("nn.Linear(old_head.in_features, num_classes)",
        "nn.Linear(old_head.out_features, num_classes)")),
    _v("nested head set as an attribute of the model (not of its parent)", "replace_head", "q2",
       ("setattr(parent, attribute,", "setattr(model, head_name,")),
    _v("softmax added to the new head", "replace_head", "q2",
       ("nn.Linear(old_head.in_features, num_classes))",
        "nn.Sequential(nn.Linear(old_head.in_features, num_classes), nn.Softmax(dim=1)))")),
    _v("model not returned", "replace_head", "q2", ("    return model\n", "")),
    _v("the new head returned instead of the model", "replace_head", "q2",
       ("    return model\n", "    return model.get_submodule(head_name)\n")),
    _v("new head set as a new attribute `fc` (an nn.Sequential appends it)", "replace_head",
       "q2", ("setattr(parent, attribute, nn.Linear(old_head.in_features, num_classes))",
              "model.fc = nn.Linear(old_head.in_features, num_classes)")),
    # q3: discriminative learning rates
    _v("learning rates swapped between the groups (largest on the stem)", "param_groups", "q3",
       ("enumerate(reversed(stages))", "enumerate(stages)")),
    _v("frozen parameters kept in the groups", "param_groups", "q3",
       ("for p in model.get_submodule(name).parameters()\n                     if p.requires_grad]",
        "for p in model.get_submodule(name).parameters()]")),
    _v("the head's group takes model.parameters() (parameters in two groups)", "param_groups",
       "q3", ("model.get_submodule(name).parameters()",
              "(model.get_submodule(name) if k else model).parameters()")),
    _v("decay applied once, not once per stage", "param_groups", "q3",
       ("base_lr * decay**k", "base_lr * decay ** min(k, 1)")),
    _v("the head's rate decayed too (off by one stage)", "param_groups", "q3",
       ("base_lr * decay**k", "base_lr * decay ** (k + 1)")),
    _v("a stage given as a tuple passed to get_submodule whole", "param_groups", "q3",
       ("names = [stage] if isinstance(stage, str) else list(stage)", "names = [stage]")),
    # q4: feature extraction
    _v("BN in train mode during feature extraction (no model.eval())", "extract_features", "q4",
       ("    model.eval()\n", "")),
    _v("features taken after the head (the logits)", "extract_features", "q4",
       ("        model(x)\n    hook.remove()\n    return captured[0]",
        "        logits = model(x)\n    hook.remove()\n    return logits")),
    _v("source normalization not applied", "extract_features", "q4",
       ("x = (images - mean) / std", "x = images")),
    _v("normalized with the batch's own statistics, not the source's", "extract_features", "q4",
       ("x = (images - mean) / std", "x = (images - images.mean()) / images.std()")),
    _v("autograd left on during extraction", "extract_features", "q4",
       ("    with torch.no_grad():\n        model(x)", "    model(x)")),
    # q5: linear probe
    _v("probe without the L2 penalty", "fit_linear_probe", "q5",
       ("\n                + weight_decay / 2 * probe.weight.square().sum())", ")")),
    _v("probe loss summed over the examples, not averaged", "fit_linear_probe", "q5",
       ("F.cross_entropy(probe(features), labels)",
        "F.cross_entropy(probe(features), labels, reduction='sum')")),
    _v("probe stopped after 3 iterations", "fit_linear_probe", "q5",
       ("max_iter=500", "max_iter=3")),
    _v("probe without a bias", "fit_linear_probe", "q5",
       ("nn.Linear(features.shape[1], num_classes)",
        "nn.Linear(features.shape[1], num_classes, bias=False)")),
    _v("probe's bias penalized too", "fit_linear_probe", "q5",
       ("probe.weight.square().sum())", "sum(p.square().sum() for p in probe.parameters()))")),
    _v("probe penalty without the 1/2", "fit_linear_probe", "q5",
       ("weight_decay / 2 * probe.weight", "weight_decay * probe.weight")),
    _v("L-BFGS left at its default max_iter (20)", "fit_linear_probe", "q5",
       ("max_iter=500, ", "")),
    _v("probe fitted with scikit-learn", "fit_linear_probe", "q5",
       ("def fit_linear_probe(", "import sklearn.linear_model\n\n\ndef fit_linear_probe("),
       ("    lbfgs.step(closure)\n",
        "    lbfgs.step(closure)\n"
        "    sklearn.linear_model.LogisticRegression(C=1 / weight_decay)  # to compare\n")),
]

HANGING_FREEZE = swallowing_hang("def freeze_all_but_head(model, head_name, lr):")

# More correct answers written another way: a set of parameter ids, assignment into
# ``_modules``, groups from a generator with stages left out afterwards, a forward hook on the
# module before the head (its output is what the head receives), and L-BFGS at its default
# tolerances with max_iter raised as the notebook says.
HONEST_FORMS_2 = '''
def freeze_all_but_head(model, head_name, lr):
    head = model.get_submodule(head_name)
    keep = {id(p) for p in head.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    model.train(False)
    head.train(True)
    return torch.optim.SGD(head.parameters(), lr=lr, momentum=0.9)

def replace_head(model, head_name, num_classes):
    names = head_name.split(".")
    parent = model
    for n in names[:-1]:
        parent = parent._modules[n]
    old = parent._modules[names[-1]]
    parent._modules[names[-1]] = nn.Linear(old.in_features, num_classes)
    return model

def param_groups(model, stages, base_lr, decay):
    n = len(stages)
    groups = []
    for i, stage in enumerate(stages):
        mods = [stage] if isinstance(stage, str) else list(stage)
        params = (p for m in mods for p in model.get_submodule(m).parameters()
                  if p.requires_grad)
        groups.append({"params": list(params), "lr": base_lr * decay ** (n - 1 - i)})
    return [g for g in groups if g["params"]]

def extract_features(model, head_name, images, mean, std):
    names = [n for n, _ in model.named_modules()]
    before = model.get_submodule(names[names.index(head_name) - 1])
    out = {}
    handle = before.register_forward_hook(lambda m, i, o: out.update(f=o))
    model.eval()
    x = (images - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    with torch.inference_mode():
        model(x)
    handle.remove()
    return out["f"].flatten(1).clone()

def fit_linear_probe(features, labels, num_classes, weight_decay):
    probe = nn.Linear(features.shape[1], num_classes)
    opt = torch.optim.LBFGS(probe.parameters(), line_search_fn="strong_wolfe", max_iter=300)
    def closure():
        opt.zero_grad()
        penalty = 0.5 * weight_decay * (probe.weight ** 2).sum()
        loss = F.cross_entropy(probe(features), labels) + penalty
        loss.backward()
        return loss
    opt.step(closure)
    return probe
'''

# Correct answers written another way; all must get full marks: a name-prefix loop with
# filter() for the optimizer, a walk to the parent with item assignment into a Sequential,
# groups listed from the stem up, the head swapped for nn.Identity under inference_mode with
# torchvision's normalize, and a probe fitted by L-BFGS at its defaults (20 iterations a
# call), called again until the loss stops changing. (Adam, even for 3,000 steps, is not a
# correct answer: on some seeds it stays 0.01-0.05 from the optimum's probabilities.)
HONEST_FORMS = '''
import torchvision.transforms.functional as TF

def freeze_all_but_head(model, head_name, lr):
    prefix = head_name + "."
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith(prefix)
    for name, m in model.named_modules():
        inside = name == head_name or name.startswith(prefix)
        if not inside and not head_name.startswith(name + ".") and name:
            m.eval()
    trainable = filter(lambda p: p.requires_grad, model.parameters())
    return torch.optim.SGD(trainable, lr=lr, momentum=0.9)

def replace_head(model, head_name, num_classes):
    *path, last = head_name.split(".")
    parent = model
    for part in path:
        parent = getattr(parent, part)
    old = getattr(parent, last)
    new = nn.Linear(old.weight.shape[1], num_classes)
    if isinstance(parent, nn.Sequential) and last.isdigit():
        parent[int(last)] = new
    else:
        setattr(parent, last, new)
    return model

def param_groups(model, stages, base_lr, decay):
    out = []
    n = len(stages)
    for i, stage in enumerate(stages):
        mods = (stage,) if isinstance(stage, str) else stage
        ps = [p for m in mods for p in model.get_submodule(m).parameters() if p.requires_grad]
        if ps:
            out.append(dict(params=ps, lr=base_lr * decay ** (n - 1 - i)))
    return out[::-1]

def extract_features(model, head_name, images, mean, std):
    *path, last = head_name.split(".")
    parent = model.get_submodule(".".join(path))
    head = getattr(parent, last)
    setattr(parent, last, nn.Identity())
    model.eval()
    with torch.inference_mode():
        out = model(TF.normalize(images, mean, std))
    setattr(parent, last, head)
    return out

def fit_linear_probe(features, labels, num_classes, weight_decay):
    probe = nn.Linear(features.shape[1], num_classes)
    opt = torch.optim.LBFGS(probe.parameters(), line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        penalty = 0.5 * weight_decay * (probe.weight ** 2).sum()
        loss = F.cross_entropy(probe(features), labels) + penalty
        loss.backward()
        return loss

    previous = float("inf")
    for _ in range(100):
        loss = float(opt.step(closure).detach())
        if abs(previous - loss) < 1e-9:
            break
        previous = loss
    return probe
'''
