"""Assignment 3 -- Reading and building architectures: questions, tests, and their references.

Every expected value is computed by a library, never by a copy of the solution:

==============================  =======================================================
student function                reference
==============================  =======================================================
``output_size``                 ``nn.Conv2d`` / ``nn.MaxPool2d`` (``ceil_mode`` too) run on
                                a ``meta`` tensor of the case's height and width
``conv_params``,                ``sum(p.numel() for p in module.parameters())`` of an
``linear_params``               ``nn.Conv2d`` (bias on/off, ``groups``) / ``nn.Linear``
``receptive_field``             autograd: a stack of convolutions (or average pools) with
                                all-ones weights; the gradient of one output pixel with
                                respect to the input is nonzero exactly on its receptive
                                field, whose height is counted
``naive_inception_macs``,       ``torch.utils.flop_counter.FlopCounterMode`` on the module's
``bottleneck_inception_macs``   convolutions, run on ``meta`` tensors: FLOPs / 2
``ResidualBlock``               ``torchvision.models.resnet.BasicBlock`` with the same
                                weights loaded (projection: 1x1 conv + BN), eval mode
``BottleneckBlock``             ``torchvision.models.resnet.Bottleneck`` (the stride on
                                the 3x3 convolution, as torchvision), same weights
``dense_block_channels``,       ``torchvision.models.densenet._DenseBlock`` run on a tensor
``dense_block_forward``         (channels of its output; its output, same weights)
==============================  =======================================================

Every input (sizes, channels, strides, kernels, weights) is drawn from the seed. The blocks
are tested in eval mode with random batch-norm statistics and affine parameters, so a batch
norm in the wrong place, a ReLU before the addition or a stride on the wrong convolution
changes the output.

Grading policy (stated in the notebook, enforced by ``policy.py`` and ``probe.py``): the
counting answers (questions 1 to 4) may not use the course's own summary and measuring
helpers or ``torch.utils.flop_counter``; the block answers (questions 5 to 7) may not use
torchvision's ResNet and DenseNet blocks or the course's model zoo. (The grader blocks the
union of these in the process that runs the notebook, so ``torch.nn`` itself stays usable
everywhere.)
"""

from __future__ import annotations

import functools
import reprlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from .core import (
    Assignment,
    Case,
    Question,
    StudentError,
    call_student,
    compare_tensor,
    integer,
    student_function,
)
from .draw import choice, generator, randint

EXPANSION = 4  # a bottleneck block's output has 4x the channels of its inner width


def _fmt_args(**kwargs: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in kwargs.items())


def compare_ints(got: Any, expected: list[int], *, names: list[str],
                 hint: str = "") -> str | None:
    """Compare lists of integers; name the first one that differs."""
    if not isinstance(got, list) or len(got) != len(expected):
        return f"expected {len(expected)} values, got {reprlib.repr(got)}"
    for g, e, what in zip(got, expected, names, strict=True):
        if g != e:
            return f"{what}: expected {e}, got {g}" + (f". Hint: {hint}" if hint else "")
    return None


# --------------------------------------------------------------------------------------
# Q1: output sizes
# --------------------------------------------------------------------------------------

CEIL_HINT = ("with ceil_mode=True the division rounds up, but a window that would start "
             "beyond the input and its left padding is dropped")
FLOOR_HINT = "the window fits floor((H + 2P - k) / S) + 1 times"


def _size_reference(kind: str, height: int, width: int, k: int, s: int, p: int,
                    ceil: bool) -> list[int]:
    x = torch.empty(1, 2, height, width, device="meta")
    if kind == "conv":
        layer: nn.Module = nn.Conv2d(2, 3, k, stride=s, padding=p, device="meta")
    else:
        layer = nn.MaxPool2d(k, stride=s, padding=p, ceil_mode=ceil)
    out = layer(x)
    return [int(out.shape[2]), int(out.shape[3])]


def _size_case(kind: str, height: int, width: int, k: int, s: int, p: int,
               ceil: bool = False) -> Case:
    kwargs = dict(kernel_size=k, stride=s, padding=p)
    if kind == "pool":
        kwargs["ceil_mode"] = ceil

    def run(ns: Mapping[str, Any]) -> list[int]:
        fn = student_function(ns, "output_size")
        out = []
        for size in (height, width):
            where = f"output_size({_fmt_args(size=size, **kwargs)})"
            out.append(integer(call_student(fn, where, size, **kwargs), where, "output_size"))
        return out

    layer = (f"nn.Conv2d(kernel_size={k}, stride={s}, padding={p})" if kind == "conv" else
             f"nn.MaxPool2d(kernel_size={k}, stride={s}, padding={p}, ceil_mode={ceil})")
    label = f"{layer} on an input of height {height} and width {width}"
    names = [f"output height (size={height})", f"output width (size={width})"]
    return Case(label, run,
                functools.partial(_size_reference, kind, height, width, k, s, p, ceil),
                functools.partial(compare_ints, names=names,
                                  hint=CEIL_HINT if ceil else FLOOR_HINT))


def _size_cases(seed: int) -> list[Case]:
    gen = generator(seed, 1)
    cases = []
    for _ in range(4):  # convolutions: padding and stride matter
        k = choice(gen, [1, 3, 5, 7, 11])
        s = randint(gen, 1, 4)
        p = randint(gen, 0, k // 2 + 1)
        cases.append(_size_case("conv", randint(gen, k + 1, 60), randint(gen, k + 1, 60), k,
                                s, p))
    for _ in range(2):  # pooling, floor
        k = randint(gen, 2, 3)
        s = randint(gen, 2, 3)
        cases.append(_size_case("pool", randint(gen, 8, 40), randint(gen, 8, 40), k, s,
                                randint(gen, 0, k // 2)))
    for _ in range(2):  # pooling, ceil, with a size that does not divide evenly
        k, s = 3, 2
        height = 2 * randint(gen, 4, 20)  # even: (H - 3) / 2 is not whole
        cases.append(_size_case("pool", height, height + 2 * randint(gen, 1, 5), k, s, 0,
                                ceil=True))
    # ceil mode where the last window would start in the right padding: it is dropped
    k, s = 2, 3 + randint(gen, 0, 1)
    height = s * randint(gen, 2, 6) + 1
    cases.append(_size_case("pool", height, height + s, k, s, 1, ceil=True))
    return cases


# --------------------------------------------------------------------------------------
# Q2: parameter counts
# --------------------------------------------------------------------------------------

def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _conv_params_case(cin: int, cout: int, k: int, groups: int, bias: bool) -> Case:
    kwargs = dict(in_channels=cin, out_channels=cout, kernel_size=k, groups=groups, bias=bias)
    where = f"conv_params({_fmt_args(**kwargs)})"

    def run(ns: Mapping[str, Any]) -> list[int]:
        fn = student_function(ns, "conv_params")
        return [integer(call_student(fn, where, **kwargs), where, "conv_params")]

    def reference() -> list[int]:
        return [_numel(nn.Conv2d(cin, cout, k, groups=groups, bias=bias, device="meta"))]

    hint = ("`groups` is the number of groups: each filter sees only the C_in / groups "
            "input channels of its own group" if groups > 1 else
            "k^2 C_in weights per output channel, plus one bias per output channel if bias")
    return Case(where, run, reference,
                functools.partial(compare_ints, names=["parameters"], hint=hint))


def _linear_params_case(n_in: int, n_out: int, bias: bool) -> Case:
    kwargs = dict(in_features=n_in, out_features=n_out, bias=bias)
    where = f"linear_params({_fmt_args(**kwargs)})"

    def run(ns: Mapping[str, Any]) -> list[int]:
        fn = student_function(ns, "linear_params")
        return [integer(call_student(fn, where, **kwargs), where, "linear_params")]

    return Case(where, run, lambda: [_numel(nn.Linear(n_in, n_out, bias=bias, device="meta"))],
                functools.partial(compare_ints, names=["parameters"]))


def _param_cases(seed: int) -> list[Case]:
    gen = generator(seed, 2)
    cases = []
    for bias in (True, False, True):  # ordinary convolutions
        cases.append(_conv_params_case(randint(gen, 1, 64), randint(gen, 1, 64),
                                       choice(gen, [1, 3, 5, 7]), 1, bias))
    for bias in (True, False):  # grouped (ResNeXt-style): the group width differs from groups
        groups = choice(gen, [2, 4, 8])
        width = choice(gen, [w for w in (3, 4, 6, 16) if w != groups])
        cases.append(_conv_params_case(groups * width, groups * randint(gen, 1, 6),
                                       3, groups, bias))
    channels = choice(gen, [16, 32, 48])  # depthwise: one group per channel
    cases.append(_conv_params_case(channels, channels, 3, channels, False))
    for bias in (True, False):
        cases.append(_linear_params_case(randint(gen, 1, 4096), randint(gen, 1, 1000), bias))
    return cases


# --------------------------------------------------------------------------------------
# Q3: receptive fields
# --------------------------------------------------------------------------------------

def _receptive_reference(layers: list[tuple[int, int]], pools: list[bool]) -> list[int]:
    """The receptive field's height, measured by autograd on all-ones weights."""
    size = 8
    while True:  # an input large enough for at least 2 x 2 outputs
        x = torch.zeros(1, 1, size, size, requires_grad=True)
        y = x
        try:
            for (k, s), pool in zip(layers, pools, strict=True):
                if pool:
                    y = nn.functional.avg_pool2d(y, k, stride=s)
                else:
                    y = nn.functional.conv2d(y, torch.ones(1, 1, k, k), stride=s)
        except RuntimeError:  # the input is smaller than a kernel somewhere
            y = x[..., :0]
        if y.shape[-1] >= 2:
            break
        size *= 2
    y[0, 0, 0, 0].backward()  # the top-left output pixel: its field starts at row 0
    rows = (x.grad[0, 0] != 0).any(dim=1).nonzero()
    return [int(rows.max() - rows.min() + 1)]


def _receptive_case(layers: list[tuple[int, int]], pools: list[bool]) -> Case:
    shown = [("pool" if pool else "conv", k, s) for (k, s), pool in zip(layers, pools,
                                                                           strict=True)]

    def run(ns: Mapping[str, Any]) -> list[int]:
        fn = student_function(ns, "receptive_field")
        where = f"receptive_field({layers})"
        return [integer(call_student(fn, where, [tuple(x) for x in layers]), where,
                        "receptive_field")]

    hint = ("every layer adds (k - 1) input pixels times the product of the strides of the "
            "layers *below* it" if any(s > 1 for _, s in layers) else
            "each k x k layer at stride 1 adds k - 1 pixels")
    label = (f"receptive_field({layers}): a stack of "
             + ", ".join(f"{t} k={k} S={s}" for t, k, s in shown))
    return Case(label, run, functools.partial(_receptive_reference, layers, pools),
                functools.partial(compare_ints, names=["receptive field"], hint=hint))


def _receptive_cases(seed: int) -> list[Case]:
    gen = generator(seed, 3)
    cases = []
    n = randint(gen, 2, 5)  # a plain stack at stride 1
    cases.append(_receptive_case([(choice(gen, [3, 5]), 1) for _ in range(n)], [False] * n))
    for _ in range(4):  # strided stacks, pooling included, as in a real network
        n = randint(gen, 3, 6)
        layers, pools = [], []
        for _ in range(n):
            pool = bool(randint(gen, 0, 3) == 0)
            k = 2 if pool else choice(gen, [1, 3, 3, 5, 7])
            s = 2 if pool else choice(gen, [1, 1, 2])
            layers.append((k, s))
            pools.append(pool)
        if all(s == 1 for _, s in layers[:-1]):
            layers[0] = (layers[0][0], 2)  # make sure a stride below another layer counts
        cases.append(_receptive_case(layers, pools))
    return cases


# --------------------------------------------------------------------------------------
# Q4: multiply-adds of Inception modules
# --------------------------------------------------------------------------------------

def _macs(convs: list[tuple[int, int, int]], height: int, width: int) -> list[int]:
    """Multiply-adds of 'same'-padded convolutions (C_in, C_out, k), by the flop counter."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        for cin, cout, k in convs:
            conv = nn.Conv2d(cin, cout, k, padding=k // 2, device="meta")
            conv(torch.empty(1, cin, height, width, device="meta"))
    return [int(counter.get_total_flops()) // 2]


def _naive_convs(c: int, n1: int, n3: int, n5: int) -> list[tuple[int, int, int]]:
    # The max-pool branch has no multiply-adds; its channels pass through.
    return [(c, n1, 1), (c, n3, 3), (c, n5, 5)]


def _bottleneck_convs(c: int, n1: int, r3: int, n3: int, r5: int, n5: int,
                      pool_proj: int) -> list[tuple[int, int, int]]:
    return [(c, n1, 1), (c, r3, 1), (r3, n3, 3), (c, r5, 1), (r5, n5, 5), (c, pool_proj, 1)]


def _inception_case(name: str, size: tuple[int, int], channels: dict[str, int],
                    convs: list[tuple[int, int, int]], hint: str) -> Case:
    height, width = size
    kwargs = dict(height=height, width=width, **channels)
    where = f"{name}({_fmt_args(**kwargs)})"

    def run(ns: Mapping[str, Any]) -> list[int]:
        fn = student_function(ns, name)
        return [integer(call_student(fn, where, **kwargs), where, name)]

    return Case(where, run, functools.partial(_macs, convs, height, width),
                functools.partial(compare_ints, names=["multiply-adds"], hint=hint))


NAIVE_HINT = ("each branch's convolution costs H W C_out k^2 C_in multiply-adds (no bias); "
              "the pooling branch costs none")
BOTTLENECK_HINT = ("six convolutions: the 1x1 branch, two 1x1 reductions, the 3x3 and 5x5 "
                   "after them, and the 1x1 projection after the pooling")


def _inception_cases(seed: int) -> list[Case]:
    gen = generator(seed, 4)
    cases = []
    for _ in range(3):
        side = randint(gen, 7, 28)
        size = (side, side + randint(gen, 0, 3))
        c = 8 * randint(gen, 4, 48)
        n1, n3, n5 = (8 * randint(gen, 2, 24) for _ in range(3))
        cases.append(_inception_case(
            "naive_inception_macs", size, dict(in_channels=c, n1x1=n1, n3x3=n3, n5x5=n5),
            _naive_convs(c, n1, n3, n5), NAIVE_HINT))
    for _ in range(4):
        side = randint(gen, 7, 28)
        size = (side, side + randint(gen, 0, 3))
        c = 8 * randint(gen, 4, 48)
        n1, n3, n5, pool_proj = (8 * randint(gen, 2, 24) for _ in range(4))
        r3, r5 = 8 * randint(gen, 2, 16), 8 * randint(gen, 1, 6)
        channels = dict(in_channels=c, n1x1=n1, reduce3x3=r3, n3x3=n3, reduce5x5=r5,
                        n5x5=n5, pool_proj=pool_proj)
        cases.append(_inception_case("bottleneck_inception_macs", size, channels,
                                     _bottleneck_convs(c, n1, r3, n3, r5, n5, pool_proj),
                                     BOTTLENECK_HINT))
    return cases


# --------------------------------------------------------------------------------------
# Q5, Q6: residual blocks, against torchvision with the same weights
# --------------------------------------------------------------------------------------

def _bn_layout(prefix: str, channels: int) -> dict[str, tuple]:
    return {f"{prefix}.{name}": (channels,) for name in
            ("weight", "bias", "running_mean", "running_var")} | \
        {f"{prefix}.num_batches_tracked": ()}


def _basic_layout(cin: int, cout: int, stride: int) -> dict[str, tuple]:
    layout = {"conv1.weight": (cout, cin, 3, 3), **_bn_layout("bn1", cout),
              "conv2.weight": (cout, cout, 3, 3), **_bn_layout("bn2", cout)}
    if stride != 1 or cin != cout:
        layout |= {"downsample.0.weight": (cout, cin, 1, 1), **_bn_layout("downsample.1", cout)}
    return layout


def _bottleneck_layout(cin: int, width: int, stride: int) -> dict[str, tuple]:
    cout = width * EXPANSION
    layout = {"conv1.weight": (width, cin, 1, 1), **_bn_layout("bn1", width),
              "conv2.weight": (width, width, 3, 3), **_bn_layout("bn2", width),
              "conv3.weight": (cout, width, 1, 1), **_bn_layout("bn3", cout)}
    if stride != 1 or cin != cout:
        layout |= {"downsample.0.weight": (cout, cin, 1, 1), **_bn_layout("downsample.1", cout)}
    return layout


def _weights(layout: dict[str, tuple], gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Random weights and batch-norm statistics far from their defaults (1 and 0)."""
    out = {}
    for key, shape in layout.items():
        name = key.rsplit(".", 1)[-1]
        if name == "num_batches_tracked":
            out[key] = torch.tensor(0)
        elif len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            out[key] = torch.randn(shape, generator=gen) * (2 / fan_in) ** 0.5
        elif name in ("weight", "running_var"):
            out[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            out[key] = torch.randn(shape, generator=gen) * 0.5
    return out


def _load(module: Any, weights: dict[str, torch.Tensor], where: str, name: str,
          shortcut_hint: str) -> nn.Module:
    if not isinstance(module, nn.Module):
        raise StudentError(f"{where}: `{name}(...)` should make an nn.Module, got "
                           f"{type(module).__name__}")
    try:
        module.load_state_dict({k: v.clone() for k, v in weights.items()})
    except RuntimeError as error:
        text = " ".join(str(error).split())
        text = text.replace("Error(s) in loading state_dict for ", "the weights for ")
        hint = ""
        if "downsample" in text:
            hint = f" Hint: {shortcut_hint}"
        raise StudentError(f"{where}: the layers of your block do not match the expected "
                           f"ones (names and shapes as in the question): "
                           f"{text[:350]}{hint}") from None
    return module.eval()


def _block_case(name: str, args: tuple[int, int, int], layout: dict[str, tuple],
                reference_block: Callable[[], nn.Module], x: torch.Tensor,
                weights: dict[str, torch.Tensor], hint: str, shortcut_hint: str) -> Case:
    cin, c2, stride = args
    arg_names = ("in_channels", "out_channels" if name == "ResidualBlock" else "width",
                 "stride")
    where = f"{name}({_fmt_args(**dict(zip(arg_names, args, strict=True)))})"

    def run(ns: Mapping[str, Any]) -> torch.Tensor:
        cls = student_function(ns, name)
        block = call_student(cls, where, cin, c2, stride=stride)
        block = _load(block, weights, where, name, shortcut_hint)
        with torch.no_grad():
            out = call_student(block, f"{where} on an input of shape {tuple(x.shape)}",
                               x.clone())
        if not isinstance(out, torch.Tensor):
            raise StudentError(f"{where}: the block's forward should return a tensor, got "
                               f"{type(out).__name__}")
        return out

    def reference() -> torch.Tensor:
        block = reference_block()
        block.load_state_dict(weights)
        with torch.no_grad():
            return block.eval()(x.clone())

    label = f"{where} in eval mode, on an input of shape {tuple(x.shape)}"
    return Case(label, run, reference,
                functools.partial(compare_tensor, what="the block's output y", hint=hint,
                                  rtol=1e-4, atol=1e-4))


def _projection(cin: int, cout: int, stride: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                         nn.BatchNorm2d(cout))


def _tv_basic(cin: int, cout: int, stride: int) -> nn.Module:
    from torchvision.models.resnet import BasicBlock

    down = _projection(cin, cout, stride) if stride != 1 or cin != cout else None
    return BasicBlock(cin, cout, stride, down)


def _tv_bottleneck(cin: int, width: int, stride: int) -> nn.Module:
    from torchvision.models.resnet import Bottleneck

    cout = width * EXPANSION
    down = _projection(cin, cout, stride) if stride != 1 or cin != cout else None
    return Bottleneck(cin, width, stride, down)


BLOCK_HINT = ("y = ReLU(F(x) + shortcut(x)): batch norm after each convolution, a ReLU "
              "between them, the last ReLU after the addition")
SHORTCUT_HINT = ("when the stride is not 1 or the channels change, the shortcut is a "
                 "projection `downsample` (1x1 convolution with the block's stride, then "
                 "batch norm)")


def _residual_cases(seed: int) -> list[Case]:
    gen = generator(seed, 5)
    cases = []
    # identity shortcut; downsampling with more channels; more channels at stride 1;
    # downsampling at the same width
    for kind in ("identity", "down", "widen", "stride"):
        cin = randint(gen, 2, 12)
        cout = {"identity": cin, "down": 2 * cin, "widen": cin + randint(gen, 1, 6),
                "stride": cin}[kind]
        stride = 2 if kind in ("down", "stride") else 1
        side = randint(gen, 5, 11)
        x = torch.randn(2, cin, side, side + randint(gen, 0, 2), generator=gen)
        layout = _basic_layout(cin, cout, stride)
        hint = BLOCK_HINT if kind == "identity" else \
            BLOCK_HINT + ("; the stride goes on the first 3x3 convolution and on the "
                          "projection" if stride > 1 else "")
        cases.append(_block_case("ResidualBlock", (cin, cout, stride), layout,
                                 functools.partial(_tv_basic, cin, cout, stride), x,
                                 _weights(layout, gen), hint, SHORTCUT_HINT))
    return cases


def _bottleneck_cases(seed: int) -> list[Case]:
    gen = generator(seed, 6)
    cases = []
    for kind in ("identity", "first", "down", "stride"):
        width = randint(gen, 2, 6)
        cin = {"identity": EXPANSION * width, "first": randint(gen, 2, 12),
               "down": 2 * width, "stride": EXPANSION * width}[kind]
        stride = 2 if kind in ("down", "stride") else 1
        side = randint(gen, 5, 11)
        x = torch.randn(2, cin, side, side + randint(gen, 0, 2), generator=gen)
        layout = _bottleneck_layout(cin, width, stride)
        hint = ("1x1 (C_in -> width), 3x3 (width -> width), 1x1 (width -> 4 width), each "
                "followed by batch norm; the last ReLU after the addition"
                + ("; the stride goes on the 3x3 convolution (and the projection)"
                   if stride > 1 else ""))
        cases.append(_block_case("BottleneckBlock", (cin, width, stride), layout,
                                 functools.partial(_tv_bottleneck, cin, width, stride), x,
                                 _weights(layout, gen), hint, SHORTCUT_HINT))
    return cases


# --------------------------------------------------------------------------------------
# Q7: dense blocks, against torchvision's _DenseBlock
# --------------------------------------------------------------------------------------

BN_SIZE = 4  # a dense layer's 1x1 convolution makes BN_SIZE * growth_rate channels


def _dense_layout(cin: int, num_layers: int, growth: int) -> list[dict[str, tuple]]:
    layers = []
    for i in range(num_layers):
        c = cin + i * growth
        layers.append({**_bn_layout("norm1", c), "conv1.weight": (BN_SIZE * growth, c, 1, 1),
                       **_bn_layout("norm2", BN_SIZE * growth),
                       "conv2.weight": (growth, BN_SIZE * growth, 3, 3)})
    return layers


def _dense_layer(c: int, growth: int) -> nn.Module:
    """One dense layer (BN, ReLU, 1x1 conv, BN, ReLU, 3x3 conv) on one tensor."""
    return nn.Sequential(OrderedDict(
        norm1=nn.BatchNorm2d(c), relu1=nn.ReLU(), conv1=nn.Conv2d(c, BN_SIZE * growth, 1,
                                                                  bias=False),
        norm2=nn.BatchNorm2d(BN_SIZE * growth), relu2=nn.ReLU(),
        conv2=nn.Conv2d(BN_SIZE * growth, growth, 3, padding=1, bias=False)))


def _tv_dense(cin: int, num_layers: int, growth: int) -> nn.Module:
    from torchvision.models.densenet import _DenseBlock

    return _DenseBlock(num_layers, cin, BN_SIZE, growth, drop_rate=0.0)


def _dense_channels_case(cin: int, num_layers: int, growth: int) -> Case:
    kwargs = dict(in_channels=cin, num_layers=num_layers, growth_rate=growth)
    where = f"dense_block_channels({_fmt_args(**kwargs)})"

    def run(ns: Mapping[str, Any]) -> list[int]:
        fn = student_function(ns, "dense_block_channels")
        return [integer(call_student(fn, where, **kwargs), where, "dense_block_channels")]

    def reference() -> list[int]:
        with torch.no_grad():
            return [int(_tv_dense(cin, num_layers, growth)(torch.zeros(1, cin, 3, 3)).shape[1])]

    return Case(where, run, reference, functools.partial(
        compare_ints, names=["output channels"],
        hint="each layer adds growth_rate channels to everything before it"))


def _dense_forward_case(cin: int, num_layers: int, growth: int, x: torch.Tensor,
                        gen: torch.Generator) -> Case:
    layouts = _dense_layout(cin, num_layers, growth)
    weights = [_weights(layout, gen) for layout in layouts]
    label = (f"dense_block_forward(x, layers) with {num_layers} layers of growth rate "
             f"{growth}, x of shape {tuple(x.shape)}")

    def run(ns: Mapping[str, Any]) -> torch.Tensor:
        fn = student_function(ns, "dense_block_forward")
        layers = []
        for i, w in enumerate(weights):
            layer = _dense_layer(cin + i * growth, growth)
            layer.load_state_dict(w)
            layers.append(layer.eval())
        with torch.no_grad():
            out = call_student(fn, label, x.clone(), layers)
        if not isinstance(out, torch.Tensor):
            raise StudentError(f"{label}: `dense_block_forward` should return a tensor, got "
                               f"{type(out).__name__}")
        return out

    def reference() -> torch.Tensor:
        block = _tv_dense(cin, num_layers, growth)
        block.load_state_dict({f"denselayer{i + 1}.{k}": v for i, w in enumerate(weights)
                               for k, v in w.items()})
        with torch.no_grad():
            return block.eval()(x.clone())

    hint = ("each layer gets the concatenation, along the channel dimension (dim 1), of the "
            "block's input and every earlier layer's output; the block returns all of them "
            "concatenated")
    return Case(label, run, reference,
                functools.partial(compare_tensor, what="the dense block's output y",
                                  hint=hint, rtol=1e-4, atol=1e-4))


def _dense_cases(seed: int) -> list[Case]:
    gen = generator(seed, 7)
    cases = [_dense_channels_case(randint(gen, 3, 256), randint(gen, 1, 24),
                                  randint(gen, 4, 48)) for _ in range(3)]
    for _ in range(3):
        cin, num_layers, growth = randint(gen, 2, 8), randint(gen, 1, 4), randint(gen, 2, 5)
        side = randint(gen, 3, 6)
        x = torch.randn(randint(gen, 1, 3), cin, side, side + 1, generator=gen)
        cases.append(_dense_forward_case(cin, num_layers, growth, x, gen))
    return cases


# --------------------------------------------------------------------------------------
# The assignment
# --------------------------------------------------------------------------------------

# Grading policy. The grader blocks the union of these lists while it tests any question,
# so no list may name something another question's tests need (torch.nn, for instance).
COUNTING_HELPERS = ("course_utils.summary", "course_utils.measure", "course_utils.models",
                    "torch.utils.flop_counter")
# torchvision's blocks by name rather than all of ``torchvision.models``: blocking that whole
# package also blocks ``enum.Enum.__new__`` (its weight enums hold a reference to it), which
# breaks the grader's own process.
LIBRARY_BLOCKS = ("torchvision.models.resnet.BasicBlock", "torchvision.models.resnet.Bottleneck",
                  "torchvision.models.densenet._DenseBlock",
                  "torchvision.models.densenet._DenseLayer", "course_utils.models")

ASSIGNMENT = Assignment(
    id="03_architectures",
    title="Assignment 3 -- Reading and building architectures",
    questions=[
        Question("q1", "Output size of a convolution or pooling layer", 10, _size_cases,
                 ("output_size",), forbidden=COUNTING_HELPERS),
        Question("q2", "Parameter counts", 10, _param_cases, ("conv_params", "linear_params"),
                 forbidden=COUNTING_HELPERS),
        Question("q3", "Receptive field of a stack of layers", 10, _receptive_cases,
                 ("receptive_field",), forbidden=COUNTING_HELPERS),
        Question("q4", "Multiply-adds of an Inception module", 10, _inception_cases,
                 ("naive_inception_macs", "bottleneck_inception_macs"),
                 forbidden=COUNTING_HELPERS),
        Question("q5", "A residual basic block", 15, _residual_cases, ("ResidualBlock",),
                 forbidden=LIBRARY_BLOCKS),
        Question("q6", "A bottleneck block", 15, _bottleneck_cases, ("BottleneckBlock",),
                 forbidden=LIBRARY_BLOCKS),
        Question("q7", "A dense block", 15, _dense_cases,
                 ("dense_block_channels", "dense_block_forward"), forbidden=LIBRARY_BLOCKS),
        Question("q8", "Design: basic or bottleneck blocks?", 15,
                 manual_note="The instructor reads your numbers and your answer."),
    ],
)
