"""Assignment 3's wrong answers: solutions/03_architectures.ipynb with one classic bug typed in.

The variants use ``grading_fixtures``' machinery (``Variant``, ``with_bug``), so they follow
the solution when it changes; a substitution that no longer matches fails loudly.
"""

from __future__ import annotations

from grading_fixtures import AssignmentFiles, Variant, _v

FILES = AssignmentFiles("03_architectures", 'check("q7")')
SOLUTION, ASSIGNMENT = FILES.solution_path, FILES.assignment_path
solution, student, answers_only = FILES.solution, FILES.student, FILES.answers_only

VARIANTS: list[Variant] = [
    # q1: output sizes
    _v("padding added on one side only (off by one)", "output_size", "q1",
       ("span = size + 2 * padding - kernel_size", "span = size + padding - kernel_size")),
    _v("ceil mode rounds down (floor vs ceil)", "output_size", "q1",
       ("out = -(-span // stride) + 1", "out = span // stride + 1")),
    _v("ceil mode keeps a window that starts in the padding", "output_size", "q1",
       ("if (out - 1) * stride >= size + padding:", "if False:")),
    _v("true division returns a float", "output_size", "q1",
       ("return span // stride + 1", "return span / stride + 1")),
    # q2: parameter counts
    _v("bias forgotten in conv parameters", "conv_params", "q2",
       ("return weights + (out_channels if bias else 0)", "return weights")),
    _v("groups misread as the width of each group", "conv_params", "q2",
       ("(in_channels // groups)", "groups")),
    _v("one bias per group and output channel", "conv_params", "q2",
       ("(out_channels if bias else 0)", "(out_channels * groups if bias else 0)")),
    _v("linear layer always counts its bias", "linear_params", "q2",
       ("(out_features if bias else 0)", "out_features")),
    # q3: receptive fields
    _v("receptive field ignores the strides", "receptive_field", "q3",
       ("jump *= stride", "jump *= 1")),
    _v("receptive field counts a layer's own stride", "receptive_field", "q3",
       ("r += (kernel_size - 1) * jump\n        jump *= stride",
        "jump *= stride\n        r += (kernel_size - 1) * jump")),
    _v("receptive field adds k instead of k - 1", "receptive_field", "q3",
       ("(kernel_size - 1) * jump", "kernel_size * jump")),
    # q4: Inception multiply-adds
    _v("bottleneck module forgets the pool projection", "bottleneck_inception_macs", "q4",
       ("\n            + conv(in_channels, pool_proj, 1))", ")")),
    _v("3x3 branch counted on C_in, not on its reduction", "bottleneck_inception_macs", "q4",
       ("conv(reduce3x3, n3x3, 3)", "conv(in_channels, n3x3, 3)")),
    _v("5x5 counted as a 3x3 in the naive module", "naive_inception_macs", "q4",
       ("conv(in_channels, n5x5, 5)", "conv(in_channels, n5x5, 3)")),
    _v("Inception count through the flop counter", "naive_inception_macs", "q4",
       ("return conv(in_channels, n1x1, 1)",
        "return 0 * hasattr(torch.utils.flop_counter, 'FlopCounterMode') + "
        "conv(in_channels, n1x1, 1)")),
    # q5: residual basic block
    _v("ReLU before the addition", "ResidualBlock", "q5",
       ("h = self.bn2(self.conv2(h))", "h = self.bn2(self.conv2(h)).relu()"),
       ("return (h + identity).relu()", "return h + identity")),
    _v("no projection when only the stride changes", "ResidualBlock", "q5",
       ("stride == 1 and cin == cout", "cin == cout")),
    _v("stride on the second convolution", "ResidualBlock", "q5",
       ("nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)",
        "nn.Conv2d(cin, cout, 3, padding=1, bias=False)"),
       ("nn.Conv2d(cout, cout, 3, padding=1, bias=False)",
        "nn.Conv2d(cout, cout, 3, stride=stride, padding=1, bias=False)")),
    _v("projection without the stride", "ResidualBlock", "q5",
       ("nn.Conv2d(cin, cout, 1, stride=stride, bias=False)",
        "nn.Conv2d(cin, cout, 1, bias=False)")),
    _v("residual block delegates to torchvision", "ResidualBlock", "q5",
       ("class ResidualBlock(nn.Module):",
        "from torchvision.models.resnet import BasicBlock as _TV\n\n\n"
        "class ResidualBlock(nn.Module):"),
       ("super().__init__()\n", "super().__init__()\n        assert _TV.expansion == 1\n")),
    # q6: bottleneck block
    _v("bottleneck stride on the first 1x1 (the paper's v1)", "BottleneckBlock", "q6",
       ("nn.Conv2d(in_channels, w, 1, bias=False)",
        "nn.Conv2d(in_channels, w, 1, stride=stride, bias=False)"),
       ("nn.Conv2d(w, w, 3, stride=stride, padding=1, bias=False)",
        "nn.Conv2d(w, w, 3, padding=1, bias=False)")),
    _v("bottleneck expansion wrong", "BottleneckBlock", "q6",
       ("w, cout = width, width * self.expansion", "w, cout = width, width * 2")),
    _v("bottleneck without the ReLU after the 3x3", "BottleneckBlock", "q6",
       ("h = self.bn2(self.conv2(h)).relu()", "h = self.bn2(self.conv2(h))")),
    # q7: dense block
    _v("concatenating on the wrong dimension", "dense_block_forward", "q7",
       ("    return torch.cat(features, dim=1)\n    ### END",
        "    return torch.cat(features, dim=0)\n    ### END")),
    _v("each dense layer sees only the previous output", "dense_block_forward", "q7",
       ("layer(torch.cat(features, dim=1))", "layer(features[-1])")),
    _v("dense block returns only the new features", "dense_block_forward", "q7",
       ("    return torch.cat(features, dim=1)\n    ### END",
        "    return torch.cat(features[1:], dim=1)\n    ### END")),
    _v("dense channels forget the block's input", "dense_block_channels", "q7",
       ("return in_channels + num_layers * growth_rate", "return num_layers * growth_rate")),
]




HANGING_BLOCK = '''
class ResidualBlock(nn.Module):
    """Never finishes building, and swallows every exception a timer could raise."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        while True:
            try:
                while True:
                    pass
            except BaseException:
                pass
'''
