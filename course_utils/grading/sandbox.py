"""Keep a submission's code away from the grader, from the machine and from the next submission.

Three independent layers, all without root, containers or extra packages (Linux):

1. **A write-protected sandbox** (:func:`restrict_self`). The process that runs student code
   first locks itself with Landlock, the Linux security module any process may use on
   itself (kernel 5.13+; all of it from 6.12): from then on it and every process it starts
   may write only inside its scratch folder, may not open TCP connections, may not signal
   or trace processes outside the sandbox (the grader), and cannot undo any of it. The
   grading package, site-packages, ``.pth`` files and the result files are out of reach.
   Where the kernel lacks Landlock the layer is reported as missing and the other two still
   hold.
2. **The environment is verified before every submission** (:class:`Environment`). A
   fingerprint of everything the grader and its child processes load -- the course package
   (file contents), site-packages, the standard library, the user site folder, Jupyter's
   kernel specs, the interpreter -- is taken once when grading starts and compared before
   (and after) each submission. A difference stops grading with a message naming the file.
3. **Every process a submission started is killed** (:func:`sweep`) before its result is
   recorded: its process groups, every process that carries the submission's marker in its
   environment, and every orphan re-parented to the grader (which makes itself a
   "subreaper", so a daemon that double-forks and calls ``setsid`` still lands there).

Child processes also get a clean environment (:func:`child_env`): no ``PYTHON*`` variables,
a scratch ``HOME``, and Python's ``-I -S -B`` flags (no user site, no ``.pth`` processing, no
bytecode written), with the package and site-packages put on ``sys.path`` explicitly.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import signal
import site
import sys
import sysconfig
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

MARKER_VARIABLE = "COURSE_GRADE_SUBMISSION"

# --------------------------------------------------------------------------------------
# Landlock (Linux): restrict this process and its future children
# --------------------------------------------------------------------------------------

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # all architectures
_PR_SET_NO_NEW_PRIVS, _PR_SET_DUMPABLE, _PR_SET_CHILD_SUBREAPER = 38, 4, 36
_RULE_PATH_BENEATH = 1
_FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 1, 1 << 2, 1 << 3
_FS_WRITES_V1 = (1 << 1) | sum(1 << i for i in range(4, 13))  # write, remove, make *
_FS_REFER, _FS_TRUNCATE = 1 << 13, 1 << 14
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1
HARMLESS_DEVICES = ("null", "zero", "full", "tty", "random", "urandom")


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover
        return None


def landlock_abi() -> int:
    """The Landlock ABI version this kernel offers (0: none)."""
    libc = _libc()
    if libc is None:
        return 0
    version = libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(int(version), 0)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def restrict_self(writable: Iterable[str | Path], *, network: bool = False) -> list[str]:
    """Lock this process (and its future children) out of writing outside ``writable``.

    Also, where the kernel supports it: no TCP bind/connect unless ``network``, and no
    signals to (or abstract sockets of) processes outside the sandbox. Returns what the
    sandbox covers, e.g. ``["files", "network", "signals"]`` (empty: no Landlock here).
    Irreversible for this process, which is the point.
    """
    abi = landlock_abi()
    libc = _libc()
    if abi < 1 or libc is None or os.environ.get("COURSE_GRADE_SANDBOX") == "off":
        return []  # "off": only for testing the other layers alone
    fs = _FS_WRITES_V1 | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0)
    net = 0 if network or abi < 4 else _NET_BIND_TCP | _NET_CONNECT_TCP
    scoped = _SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL if abi >= 6 else 0
    attr = _RulesetAttr(fs, net, scoped)
    size = 8 if abi < 4 else (16 if abi < 6 else 24)
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size),
                           ctypes.c_uint32(0))
    if ruleset < 0:
        return []
    try:
        rules = [(str(p), fs) for p in writable]
        # A few harmless devices stay writable -- each by name: never /dev as a whole, whose
        # disks a process running as root could otherwise write to.
        device = _FS_WRITE_FILE | (_FS_TRUNCATE if abi >= 3 else 0)
        rules += [(f"/dev/{name}", device) for name in HARMLESS_DEVICES]
        for path, access in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                rule = _PathBeneath(access, fd)
                libc.syscall(_SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH),
                             ctypes.byref(rule), ctypes.c_uint32(0))
            finally:
                os.close(fd)
        libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        if libc.syscall(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            return []
    finally:
        os.close(ruleset)
    return ["files"] + (["network"] if net else []) + (["signals"] if scoped else [])


def harden_grader() -> None:
    """For the grading process: orphans come back to it, and its memory cannot be read.

    ``PR_SET_CHILD_SUBREAPER`` makes every orphaned descendant a child of this process (so
    :func:`sweep` finds daemons); ``PR_SET_DUMPABLE 0`` closes ``/proc/PID/mem`` and
    ``ptrace`` to other processes of the same user (the expected values live here).
    """
    libc = _libc()
    if libc is not None:
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def become_subreaper() -> None:
    """Only the subreaper half of :func:`harden_grader` (safe inside a test process)."""
    libc = _libc()
    if libc is not None:
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


# --------------------------------------------------------------------------------------
# The child's environment and command line
# --------------------------------------------------------------------------------------

def package_root() -> str:
    """The folder that contains the ``course_utils`` the grader itself runs."""
    return str(Path(__file__).resolve().parents[2])


def site_dirs() -> list[str]:
    """The interpreter's site-packages folders (put on the child's ``sys.path`` explicitly)."""
    dirs = [*site.getsitepackages()]
    purelib = sysconfig.get_paths().get("purelib")
    if purelib and purelib not in dirs:
        dirs.append(purelib)
    return [d for d in dirs if os.path.isdir(d)]


def new_marker() -> str:
    return uuid.uuid4().hex


def child_env(scratch: str | Path, marker: str, profile: str | None = None,
              extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean environment for a process that runs student code.

    Only what the course needs passes through (``COURSE_*`` settings, the locale, ``PATH``);
    ``HOME``, ``TMPDIR`` and IPython's folder point into the scratch folder; no network
    downloads are attempted (``COURSE_OFFLINE``); the CPU only, with one thread (small
    tensors, and ``fork`` stays safe).
    """
    scratch = str(scratch)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": scratch, "TMPDIR": scratch,
           "IPYTHONDIR": os.path.join(scratch, ".ipython"), "MPLBACKEND": "Agg",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONHASHSEED": "0", "COURSE_OFFLINE": "1", "COURSE_PROGRESS": "0",
           MARKER_VARIABLE: marker}
    for key in ("LANG", "LC_ALL", "TERM"):
        if key in os.environ:
            env[key] = os.environ[key]
    for key, value in os.environ.items():
        if key.startswith("COURSE_") and key not in env and key != MARKER_VARIABLE:
            env[key] = value
    if profile:
        env["COURSE_PROFILE"] = profile
    # On the CPU: the runner forks after each cell, and CUDA does not survive a fork.
    env["COURSE_DEVICE"], env["CUDA_VISIBLE_DEVICES"] = "cpu", ""
    mpl = matplotlib_cache()
    if mpl:  # read the font cache instead of rebuilding it each time (read-only in the sandbox)
        env["MPLCONFIGDIR"] = mpl
    env.update(extra or {})
    return env


def matplotlib_cache() -> str | None:
    home = Path(os.environ.get("MPLCONFIGDIR") or Path.home() / ".cache" / "matplotlib")
    return str(home) if home.is_dir() else None


def python_command(module: str, *args: str) -> list[str]:
    """``python -I -S -B`` running ``module`` from the grader's own package and site dirs.

    ``-S`` means no ``.pth`` file (planted or not) is executed in the child; the folders are
    added to ``sys.path`` by path, in the grader's order.
    """
    paths = [package_root(), *site_dirs()]
    boot = (f"import sys; sys.path[:0] = {paths!r}; import runpy; "
            f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)")
    return [sys.executable, "-I", "-S", "-B", "-c", boot, *args]


# --------------------------------------------------------------------------------------
# Killing every process a submission started
# --------------------------------------------------------------------------------------

def _stat(pid: int) -> tuple[int, int, str, int] | None:
    """(ppid, pgid, state, start time in ticks) from /proc/PID/stat, None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes().decode(errors="replace")
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2:].split()
    try:
        return int(fields[1]), int(fields[2]), fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def _has_marker(pid: int, marker: bytes) -> bool:
    try:
        return marker in Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False


def _pids() -> list[int]:
    try:
        return [int(n) for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return []


def boot_ticks() -> int:
    """Now, in the clock ticks since boot that /proc/PID/stat uses for start times."""
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except OSError:
        return 0
    return int(uptime * os.sysconf("SC_CLK_TCK"))


def submission_processes(marker: str, groups: Iterable[int] = (), since: int | None = None,
                         keep: Iterable[int] = ()) -> list[int]:
    """Processes that belong to a submission.

    Those carrying ``marker`` in their environment, those in one of ``groups``, and the
    grader's own children that started after ``since`` (orphans re-parented to it) except
    ``keep``.
    """
    me, token = os.getpid(), f"{MARKER_VARIABLE}={marker}".encode()
    groups, keep = set(groups), set(keep) | {me}
    found = []
    for pid in _pids():
        if pid in keep:
            continue
        info = _stat(pid)
        if info is None:
            continue
        ppid, pgid, state, start = info
        if pgid in groups or (ppid == me and since is not None and start >= since) \
                or _has_marker(pid, token):
            found.append(pid)
    return found


def sweep(marker: str, groups: Iterable[int] = (), since: int | None = None,
          keep: Iterable[int] = (), rounds: int = 50) -> int:
    """Stop, then kill every process of the submission; reap those that were our children.

    Processes are frozen (SIGSTOP) before they are killed, so a process that keeps forking
    cannot outrun the scan. Returns how many processes were killed.
    """
    if not sys.platform.startswith("linux"):
        for group in groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except OSError:
                pass
        return 0
    killed: set[int] = set()
    for _ in range(rounds):
        pids = submission_processes(marker, groups, since, keep)
        alive = [p for p in pids if (_stat(p) or (0, 0, "Z", 0))[2] not in "ZX"]
        for pid in alive:
            try:
                os.kill(pid, signal.SIGSTOP)
            except OSError:
                pass
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        killed |= set(alive)
        for pid in pids:  # reap our own children (zombies otherwise)
            try:
                os.waitpid(pid, os.WNOHANG)
            except (ChildProcessError, OSError):
                pass
        if not alive:
            break
        time.sleep(0.02)
    return len(killed)


# --------------------------------------------------------------------------------------
# The grading environment's fingerprint
# --------------------------------------------------------------------------------------

def watched_paths() -> dict[str, str]:
    """What the grader and its children load: ``{path: "content" | "stat"}``.

    The course package is compared by content; the large trees (site-packages, the
    standard library) by each file's size, modification and *change* time -- the change
    time cannot be set back by an ordinary user, so any rewrite shows.
    """
    paths: dict[str, str] = {os.path.join(package_root(), "course_utils"): "content"}
    for d in site_dirs():
        paths[d] = "stat"
    stdlib = sysconfig.get_paths().get("stdlib")
    if stdlib:
        paths[stdlib] = "stat"
    user_site = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    if user_site:
        paths[user_site] = "stat"  # absent now: its creation is a change too
    try:
        from jupyter_core.paths import jupyter_path

        for d in jupyter_path("kernels"):
            paths[d] = "stat"
    except ImportError:  # pragma: no cover - jupyter comes with the grading extra
        pass
    mpl = matplotlib_cache()
    if mpl:
        paths[mpl] = "stat"
    paths[os.path.realpath(sys.executable)] = "stat"
    return paths


def _fingerprint(path: str, how: str) -> dict[str, str]:
    entries: dict[str, str] = {}

    def record(file: str) -> None:
        try:
            st = os.lstat(file)
        except OSError:
            return
        key = f"{st.st_mode:o}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"
        if how == "content" and os.path.isfile(file) and not os.path.islink(file):
            try:
                key += ":" + hashlib.sha256(Path(file).read_bytes()).hexdigest()
            except OSError:
                pass
        entries[file] = key

    if not os.path.lexists(path):
        return {path: "absent"}
    record(path)
    if os.path.isdir(path) and not os.path.islink(path):
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                record(os.path.join(root, name))
    return entries


class Environment:
    """A fingerprint of the grading environment, taken now; :meth:`changes` compares."""

    def __init__(self, paths: dict[str, str] | None = None) -> None:
        self.paths = paths if paths is not None else watched_paths()
        self.baseline = self._scan()

    def _scan(self) -> dict[str, str]:
        entries: dict[str, str] = {}
        for path, how in self.paths.items():
            entries.update(_fingerprint(path, how))
        return entries

    def changes(self, limit: int = 5) -> list[str]:
        """What differs from the baseline: ``"modified: PATH"``, ``"added: PATH"``, ..."""
        now = self._scan()
        found = [f"added: {p}" if self.baseline.get(p, "absent") == "absent" else
                 (f"removed: {p}" if now.get(p, "absent") == "absent" else f"modified: {p}")
                 for p in sorted(set(now) | set(self.baseline))
                 if now.get(p, "absent") != self.baseline.get(p, "absent")]
        return found[:limit] + ([f"... and {len(found) - limit} more"] if len(found) > limit
                                else [])
