"""Checks run inside every notebook kernel that `make notebooks` starts.

The Makefile installs this file as an IPython startup file (``IPYTHONDIR``), so it runs
before the notebook's first cell; it changes nothing a notebook computes. When a failure is
found it prints a line starting with ``COURSE CHECK FAILED`` to stderr, and
``tools/course_pytest.py`` fails that cell with the message.

* A figure drawn after the offline stand-in dataset was loaded must say so: a figure whose
  titles name a real dataset (Fashion-MNIST, MNIST, CIFAR-10) and none of which says
  "stand-in" would show stand-in results under the real dataset's name.
"""

from __future__ import annotations


def _install() -> None:
    import re
    import sys

    try:
        from matplotlib.backend_bases import FigureCanvasBase

        import course_utils.data as data
    except ImportError:  # not this course's environment: nothing to check
        return

    real = re.compile(r"\b(Fashion-?MNIST|MNIST|CIFAR-?10|CIFAR-?100)\b", re.IGNORECASE)
    state = {"standin": False}
    load_standin = data.load_digits_standin

    def load_digits_standin(*args, **kwargs):
        state["standin"] = True
        return load_standin(*args, **kwargs)

    data.load_digits_standin = load_digits_standin
    print_figure = FigureCanvasBase.print_figure

    def checked_print_figure(self, *args, **kwargs):
        if state["standin"]:
            fig = self.figure
            titles = [fig._suptitle.get_text()] if getattr(fig, "_suptitle", None) else []
            for ax in fig.axes:
                titles += [ax.get_title(loc=loc) for loc in ("left", "center", "right")]
            titles = [t for t in titles if t]
            named = [t for t in titles if real.search(t)]
            if named and not any("stand-in" in t for t in titles):
                print(f"COURSE CHECK FAILED: a figure drawn from the offline stand-in is "
                      f"titled {named[0]!r} without saying it is the stand-in (use the "
                      "dataset's title, e.g. data.name, which names the stand-in)",
                      file=sys.stderr)
        return print_figure(self, *args, **kwargs)

    FigureCanvasBase.print_figure = checked_print_figure


_install()
del _install
