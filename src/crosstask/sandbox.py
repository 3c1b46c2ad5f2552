"""Run untrusted Python (model-written solutions) against hidden unit tests in a throw-away sandbox.

Each call starts one child process, ``python -S -s -B sandbox.py`` (no site-packages, no bytecode
writes, no environment but ``PYTHONHASHSEED=0``, so that runs are deterministic), in a fresh scratch
directory that is deleted afterwards. Before it compiles the code, the child confines itself in layers;
each applies where the platform allows it, and :attr:`SandboxResult.layers` says which did:

* ``rlimits`` (always): address space (the memory limit), CPU seconds, 1 MB per written file (which
  also caps printed output), 64 open files, no core dumps, and ``RLIMIT_NPROC`` 0 (no new processes
  or threads; the kernel exempts root from it, hence ``seccomp``).
* ``userns`` and ``netns`` (Linux with unprivileged user namespaces): new user and network
  namespaces, whose only interface is a loopback that is down: no network at all.
* ``landlock`` (Linux >= 5.13): writes only beneath the scratch directory, reads only beneath it, the
  Python installation and the system library folders, so the run directory and its store can be
  neither written nor read; ``landlock-net`` (>= 6.7) denies TCP connect and bind, and
  ``landlock-scope`` (>= 6.12) denies signals to processes outside the sandbox.
* ``seccomp`` (Linux on x86-64 and arm64): the system calls that create sockets, processes or threads,
  or execute programs, fail.
* ``audit`` (always): a ``sys.addaudithook`` hook, which the code cannot remove, refuses the same file
  accesses, sockets, subprocesses, ``os.system``/``exec``/``fork``/``kill``, ``ctypes`` and frame
  introspection. Alone (e.g. on macOS) it guards against accidents, not against code written to
  escape an audit hook; the kernel layers are the boundary.

The parent kills the child's whole process group (it has a session of its own) when the wall-clock
limit runs out, and in any case once it has ended. A pass must arrive on a line carrying a secret the
child reads before the code runs, so printing "passed" does not pass; and answers are compared by
exact builtin type, so an object whose ``__eq__`` always says yes does not pass either.

Hidden tests are ``assert <expression> == <literal>`` lines; other statements run as they are.
"""

from __future__ import annotations

import marshal
import os
import resource
import sys

MAX_FILE_BYTES = 1 << 20  # per file the code writes, and for everything it prints


# ---------------------------------------------------------------------------------------------------
# Child side, first in the file so that the child, which runs this file as a script, starts without the
# parent's imports. Everything it calls after the code under test has run is bound beforehand (default
# arguments, locals), because that code can replace builtins and module attributes.


def _child_main() -> None:
    """Read the request, confine this process, run the code and the tests, report on the result pipe."""
    del sys.path[0]  # the folder of this file: the code under test must not import the project
    request = marshal.loads(_read_all(0))  # the same interpreter wrote it
    nonce = request.pop("nonce").encode()
    report_fd = request["result_fd"]
    try:
        tests = _compile_tests(request["tests"])
        layers = _confine(request)
    except BaseException as error:  # noqa: BLE001 (reported, then the parent raises SandboxError)
        _report(report_fd, nonce, "internal", _describe(error), ())
        os._exit(2)
    _report(report_fd, nonce, "started", "", layers)
    status, detail = _run_untrusted(request["code"], tests)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001, S110 (the code may have replaced or closed them)
            pass
    _report(report_fd, nonce, status, detail, layers)
    os._exit(0)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def _report(fd, nonce, status, detail, layers, write=os.write, encode=str.encode, replace=str.replace,
            join=",".join, str_type=str):
    line = f"{status} {join(layers) or '-'} {replace(str_type(detail), chr(10), ' ')}"[:4000]
    try:
        write(fd, nonce + b" " + encode(line, "utf-8", "replace") + b"\n")
    except OSError:
        pass  # the code closed the pipe: no report, so no pass


def _compile_tests(tests) -> list:
    compiled = []
    for source, call, expected in tests:
        if call is None:
            compiled.append((source, compile(source, "<tests>", "exec"), None, False))
        else:  # the expected value is a literal from our own tests, evaluated without builtins
            compiled.append((source, compile(call, "<tests>", "eval"), eval(expected, {"__builtins__": {}}), True))
    return compiled


def _run_untrusted(code: str, tests: list, compile=compile, exec=exec, eval=eval, len=len) -> tuple[str, str]:
    try:
        solution = compile(code, "<solution>", "exec")
    except MemoryError:
        return "memory", "the memory limit ran out while compiling"
    except (SyntaxError, ValueError, OverflowError, RecursionError) as error:
        return "syntax", _describe(error)
    module = type(sys)("solution")  # a real module, which dataclasses and pickle look up by name
    sys.modules["solution"] = module
    namespace = module.__dict__
    outcome = _guarded(exec, solution, namespace)
    if outcome[0] != "ok":
        return ("error", "AssertionError") if outcome[0] == "assertion" else outcome
    for source, test, expected, is_call in tests:
        outcome = _guarded(eval if is_call else exec, test, namespace)
        if outcome[0] == "assertion":
            return "failed", source
        if outcome[0] != "ok":
            return outcome[0], f"{source}: {outcome[1]}"
        if is_call and not _same(outcome[1], expected):
            return "failed", f"{source}  # got {_short_repr(outcome[1])}"
    return "passed", f"{len(tests)} tests passed"


def _guarded(run, code, namespace) -> tuple[str, object]:
    try:
        return "ok", run(code, namespace)
    except MemoryError:
        return "memory", "MemoryError: the memory limit ran out"
    except AssertionError:
        return "assertion", ""
    except BaseException as error:  # noqa: BLE001 (any exception of the code under test is its failure)
        return "error", _describe(error)


_PLAIN = frozenset({bool, int, float, complex, str, bytes, type(None)})


def _same(actual, expected, type=type, len=len, abs=abs, max=max, zip=zip, all=all, any=any, plain=_PLAIN) -> bool:
    """Equal, and of the same builtin types all the way down (an int and a float compare as numbers).

    Exact types mean only builtin ``__eq__`` methods run, so an object that claims to equal anything fails.
    """
    kind, actual_kind = type(expected), type(actual)
    if kind in (int, float) and actual_kind in (int, float):
        if kind is float or actual_kind is float:
            return abs(actual - expected) <= 1e-9 * max(1.0, abs(expected))
        return actual == expected
    if actual_kind is not kind:
        return False
    if kind in (list, tuple):
        return len(actual) == len(expected) and all(_same(a, e) for a, e in zip(actual, expected))
    if kind is dict:
        if len(actual) != len(expected) or any(type(key) not in plain for key in actual):
            return False
        return all(key in actual and _same(actual[key], value) for key, value in expected.items())
    if kind in (set, frozenset):
        return all(type(item) in plain for item in actual) and actual == expected
    return kind in plain and actual == expected


def _short_repr(value, limit: int = 200) -> str:
    try:
        text = repr(value)
    except BaseException:  # noqa: BLE001
        return "<a value without a repr>"
    return text if len(text) <= limit else text[:limit] + "..."


def _describe(error: BaseException) -> str:
    try:
        message = str(error)
    except BaseException:  # noqa: BLE001
        message = ""
    name = getattr(type(error), "__name__", "Exception")
    return f"{name}: {message}"[:500] if message else str(name)[:500]


def _confine(request: dict) -> tuple[str, ...]:
    """Apply every confinement layer this platform offers; returns their names."""
    scratch = os.getcwd()
    read_roots = _read_roots(scratch)
    layers = []
    kernel = _KernelConfinement()
    if kernel.enter_namespaces():
        layers += ["userns", "netns"]
    if kernel.forbid_new_privileges():  # Landlock and seccomp require it
        layers += kernel.landlock(scratch, read_roots)
        layers += kernel.seccomp()
    cpu = int(-(-request["timeout"] // 1))  # whole seconds, rounded up
    limits = [(resource.RLIMIT_AS, request["memory_mb"] << 20), (resource.RLIMIT_FSIZE, MAX_FILE_BYTES),
              (resource.RLIMIT_NOFILE, 64), (resource.RLIMIT_NPROC, 0), (resource.RLIMIT_CORE, 0)]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU first, SIGKILL a second later
    for limit, value in limits:
        resource.setrlimit(limit, (value, value))
    layers.append("rlimits")
    os.environ.clear()  # the code sees an empty environment
    for name in [name for name in sys.modules if name == "ctypes" or name.startswith(("ctypes.", "_ctypes"))]:
        del sys.modules[name]  # re-importing them is refused below
    del sys.modules["__main__"]  # this harness: the code must not reach its functions
    sys.addaudithook(_audit_hook(scratch, read_roots))
    layers.append("audit")
    return tuple(layers)


def _read_roots(scratch: str) -> tuple[str, ...]:
    """Folders the code may read: the scratch directory, the standard library (this interpreter's
    ``sys.path`` without site-packages) and the system library folders that extension modules link to."""
    candidates = [scratch, *sys.path, os.path.join(sys.base_prefix, "lib"), os.path.join(sys.prefix, "lib"),
                  "/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib"]
    roots = []
    for path in candidates:
        if path and os.path.exists(path):
            for form in (os.path.abspath(path), os.path.realpath(path)):
                if form not in roots:
                    roots.append(form)
    return tuple(roots)


class _KernelConfinement:
    """Linux namespaces, Landlock and seccomp through libc; every step falls back silently where unsupported."""

    CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
    PR_SET_NO_NEW_PRIVS = 38
    SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446  # the same on every architecture
    EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
    REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15  # Landlock ABI 2, 3 and 5
    NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
    SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6
    # machine -> (audit arch, numbers of socket, socketpair, fork, vfork, clone, clone3, execve, execveat, ptrace)
    SECCOMP_CALLS = {
        "x86_64": (0xC000003E, (41, 53, 57, 58, 56, 435, 59, 322, 101)),
        "aarch64": (0xC00000B7, (198, 199, 220, 435, 221, 281, 117)),  # no fork and vfork calls there
    }

    def __init__(self):
        self.libc = None
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                self.ctypes = ctypes
                self.libc = ctypes.CDLL(None, use_errno=True)
            except (ImportError, OSError):
                self.libc = None

    def enter_namespaces(self) -> bool:
        return self.libc is not None and self.libc.unshare(self.CLONE_NEWUSER | self.CLONE_NEWNET) == 0

    def forbid_new_privileges(self) -> bool:
        return self.libc is not None and self.libc.prctl(self.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0

    def seccomp(self) -> list[str]:
        """A seccomp filter that fails the system calls that make processes, threads or sockets with EPERM.

        It binds root too (``RLIMIT_NPROC`` does not), and covers sockets of every family, including
        Unix sockets with a path, which the network namespace leaves alone.
        """
        calls = self.SECCOMP_CALLS.get(os.uname().machine)
        if calls is None:
            return []
        arch, numbers = calls
        ctypes = self.ctypes
        load, jump_equal, jump_at_least, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, JMP|JEQ|K, JMP|JGE|K, RET|K
        allow, refuse, kill = 0x7FFF0000, 0x00050000 | 1, 0  # SECCOMP_RET_ALLOW, RET_ERRNO | EPERM, RET_KILL
        program = [(load, 0, 0, 4), (jump_equal, 1, 0, arch), (ret, 0, 0, kill),  # another ABI: kill
                   (load, 0, 0, 0), (jump_at_least, len(numbers) + 1, 0, 0x40000000)]  # x32 calls: refuse
        program += [(jump_equal, len(numbers) - i, 0, number) for i, number in enumerate(numbers)]
        program += [(ret, 0, 0, allow), (ret, 0, 0, refuse)]

        class Filter(ctypes.Structure):
            _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                        ("k", ctypes.c_uint32)]

        class Program(ctypes.Structure):
            _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(Filter))]

        filters = (Filter * len(program))(*[Filter(*instruction) for instruction in program])
        prog = Program(len(program), filters)
        set_seccomp, filter_mode = 22, 2  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        return ["seccomp"] if self.libc.prctl(set_seccomp, filter_mode, ctypes.byref(prog), 0, 0) == 0 else []

    def landlock(self, scratch: str, read_roots: tuple[str, ...]) -> list[str]:
        if self.libc is None:
            return []
        ctypes, syscall = self.ctypes, self.libc.syscall
        syscall.restype = ctypes.c_long
        abi = syscall(self.SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))  # 1: the ABI version
        if abi < 1:
            return []
        handled_fs = (1 << 13) - 1  # ABI 1: execute, read, write, remove and make rights
        handled_fs |= (self.REFER if abi >= 2 else 0) | (self.TRUNCATE if abi >= 3 else 0)
        handled_fs |= self.IOCTL_DEV if abi >= 5 else 0
        handled_net = self.NET_BIND_TCP | self.NET_CONNECT_TCP if abi >= 4 else 0  # no rules: all denied
        scoped = self.SCOPE_ABSTRACT_UNIX_SOCKET | self.SCOPE_SIGNAL if abi >= 6 else 0

        class RulesetAttr(ctypes.Structure):
            _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]

        class PathBeneath(ctypes.Structure):
            _pack_ = 1
            _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

        attr = RulesetAttr(handled_fs, handled_net, scoped)
        size = 8 if abi < 4 else 16 if abi < 6 else 24  # the struct grew with the ABI
        ruleset = syscall(self.SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
        if ruleset < 0:
            return []
        try:
            read = self.EXECUTE | self.READ_FILE | self.READ_DIR
            for root in read_roots:
                if not self._allow(ruleset, PathBeneath, root, handled_fs if root == scratch else read):
                    return []
            if syscall(self.SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
                return []
        finally:
            os.close(ruleset)
        return ["landlock"] + (["landlock-net"] if handled_net else []) + (["landlock-scope"] if scoped else [])

    def _allow(self, ruleset: int, path_beneath, path: str, access: int) -> bool:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return True  # nothing there to allow
        try:
            if not os.path.isdir(path):  # files take file rights only
                access &= self.EXECUTE | self.WRITE_FILE | self.READ_FILE | self.TRUNCATE | self.IOCTL_DEV
            rule = path_beneath(access, fd)
            ctypes = self.ctypes
            return self.libc.syscall(self.SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(1),  # 1: path beneath
                                     ctypes.byref(rule), ctypes.c_uint32(0)) == 0
        finally:
            os.close(fd)


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# event -> (positions of path arguments, positions of dir_fd arguments); allowed inside the scratch dir only
_WRITE_EVENTS = {"os.remove": ((0,), (1,)), "os.rmdir": ((0,), (1,)), "os.mkdir": ((0,), (2,)),
                 "os.rename": ((0, 1), (2, 3)), "os.truncate": ((0,), ()), "os.utime": ((0,), (3,))}
_READ_EVENTS = {"os.listdir", "os.scandir", "os.listxattr", "os.getxattr"}
_REFUSED_EVENTS = frozenset({
    "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty", "subprocess.Popen", "pty.spawn",
    "os.kill", "os.killpg", "signal.pthread_kill", "os.symlink", "os.link", "os.chmod", "os.chown", "os.chflags",
    "os.lchflags", "os.setxattr", "os.removexattr", "os.chdir", "os.chroot", "os.startfile", "resource.setrlimit",
    "resource.prlimit", "sys._current_frames", "sys._current_exceptions", "sys.settrace", "sys.setprofile",
    "gc.get_objects", "gc.get_referrers", "gc.get_referents", "cpython.PyInterpreterState_New",
})
_REFUSED_PREFIXES = ("socket.", "ctypes.", "shutil.", "http.client.", "urllib.", "ftplib.", "smtplib.", "poplib.",
                     "imaplib.", "nntplib.", "telnetlib.", "webbrowser.")
_REFUSED_IMPORTS = frozenset({"ctypes", "_ctypes", "gc", "__main__", "_posixsubprocess", "_xxsubinterpreters",
                              "_xxinterpchannels", "_testcapi", "_testinternalcapi"})
_FRAME_ATTRIBUTES = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back"})


def _audit_hook(scratch: str, read_roots: tuple[str, ...]):
    """The audit hook of the ``audit`` layer. It runs after the code under test has had the chance to
    replace builtins and module attributes, so everything it uses is bound now, as default arguments."""
    write_roots = tuple(dict.fromkeys((scratch, os.path.realpath(scratch))))

    def inside(path, roots, type=type, getcwd=os.getcwd, decode=bytes.decode, split=str.split,
               startswith=str.startswith, join="/".join, any=any) -> bool:
        if type(path) is int:
            return True  # an open descriptor: its path was checked when it was opened
        if type(path) is bytes:
            path = decode(path, "utf-8", "surrogateescape")
        if path is None:
            path = "."
        if type(path) is not str:
            return False  # e.g. a PathLike whose __fspath__ could answer differently next time
        if not startswith(path, "/"):
            path = getcwd() + "/" + path
        parts = []
        for part in split(path, "/"):  # lexical: no symlink can be made inside the scratch dir
            if part == "..":
                if parts:
                    parts.pop()
            elif part and part != ".":
                parts.append(part)
        normal = "/" + join(parts)
        return any(normal == root or startswith(normal, root + "/") for root in roots)

    def refuse(what: str):
        raise PermissionError(f"the sandbox does not allow {what}")

    def hook(event: str, args: tuple, type=type, len=len, any=any, startswith=str.startswith, inside=inside,
             refuse=refuse, write_events=_WRITE_EVENTS, read_events=_READ_EVENTS, refused_events=_REFUSED_EVENTS,
             refused_prefixes=_REFUSED_PREFIXES, refused_imports=_REFUSED_IMPORTS,
             frame_attributes=_FRAME_ATTRIBUTES, write_flags=_WRITE_FLAGS) -> None:
        if event == "open":
            path, mode, flags = args
            writing = (flags or 0) & write_flags != 0 or (type(mode) is str and any(c in mode for c in "wax+"))
            if mode is None and type(path) is str and not startswith(path, "/"):
                refuse("os.open with a relative path")  # its dir_fd is not part of the event
            if not inside(path, write_roots if writing else read_roots):
                refuse(f"{'writing' if writing else 'reading'} {path!r}")
        elif event in write_events:
            paths, dir_fds = write_events[event]
            if any(args[i] not in (None, -1) for i in dir_fds if i < len(args)):
                refuse(f"{event} relative to a directory descriptor")
            for i in paths:
                if not inside(args[i], write_roots):
                    refuse(f"{event} on {args[i]!r}")
        elif event in read_events:
            if not inside(args[0], read_roots):
                refuse(f"{event} on {args[0]!r}")
        elif event in refused_events or startswith(event, refused_prefixes):
            refuse(event)
        elif event == "import" and (args[0] in refused_imports or startswith(args[0], "ctypes.")):
            raise ImportError(f"the sandbox does not allow importing {args[0]}")
        elif event == "sys._getframe":
            raise ValueError("the sandbox does not allow frame introspection")  # the error stdlib callers expect
        elif event == "object.__getattr__" and args[1] in frame_attributes:
            raise AttributeError(f"the sandbox does not allow reading {args[1]}")

    return hook


if __name__ == "__main__":
    _child_main()  # does not return


# ---------------------------------------------------------------------------------------------------
# Parent side

import ast  # noqa: E402  (the parent's imports, which the child does not need)
import secrets  # noqa: E402
import select  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Literal  # noqa: E402

DEFAULT_TIMEOUT = 5.0  # seconds of wall-clock time per run, Python start-up included
DEFAULT_MEMORY_MB = 256  # address space of the child; its interpreter alone takes about 20 MB
OUTPUT_TAIL = 4000  # characters of printed output kept in the result
_MAX_REPORT_BYTES = 1 << 16

Status = Literal["passed", "failed", "timeout", "memory", "error", "syntax"]


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the code under test): the scores would be meaningless."""


@dataclass(frozen=True)
class SandboxResult:
    passed: bool
    status: Status  # failed: a wrong answer; error: an exception or a refused operation
    detail: str  # the failed assert and the value the code returned, the exception, or why the run ended
    seconds: float  # wall-clock time of the run
    output: str = ""  # the end of what the code printed
    layers: tuple[str, ...] = ()  # the confinement layers that applied (see the module docstring)
    pid: int = 0  # the child process, also its process group: nothing of it outlives the run


def run_tests(code: str, tests: str, timeout: float = DEFAULT_TIMEOUT,
              memory_mb: int = DEFAULT_MEMORY_MB) -> SandboxResult:
    """Run ``code`` and then the hidden ``tests`` in a fresh sandboxed process; see the module docstring."""
    request = {"code": code, "tests": _split_tests(tests), "timeout": timeout, "memory_mb": memory_mb,
               "nonce": secrets.token_hex(16)}
    started = time.monotonic()
    scratch = tempfile.mkdtemp(prefix="crosstask-sandbox-")
    report_read, report_write = os.pipe()
    try:
        with tempfile.TemporaryFile() as output:  # outside the scratch directory, out of the code's reach
            request["result_fd"] = report_write
            process = _spawn(scratch, output, report_write)
            os.close(report_write)
            report_write = -1
            timed_out = _feed_and_wait(process, marshal.dumps(request), timeout)
            elapsed = time.monotonic() - started
            report = _read_report(report_read, request["nonce"])
            printed = _tail(output)
    finally:
        for fd in (report_read, report_write):
            if fd >= 0:
                os.close(fd)
        _remove_tree(scratch)
    return _verdict(process, report, timed_out, elapsed, printed)


def _spawn(scratch: str, output, report_fd: int) -> subprocess.Popen:
    try:
        return subprocess.Popen(
            [sys.executable, "-S", "-s", "-B", os.path.realpath(__file__)],
            stdin=subprocess.PIPE, stdout=output, stderr=subprocess.STDOUT, cwd=scratch,
            env={"PYTHONHASHSEED": "0", "PYTHONUTF8": "1", "PATH": "/usr/bin:/bin"},
            start_new_session=True, pass_fds=(report_fd,),  # no preexec_fn: safe beside torch's threads
        )
    except OSError as error:
        raise SandboxError(f"cannot start the sandbox process: {error}") from error


def _feed_and_wait(process: subprocess.Popen, request: bytes, timeout: float) -> bool:
    """Send the request, wait for the child to end or the time to run out, kill its process group.

    Returns whether the time ran out. The group is killed while the child is still unreaped (waited
    for without reaping through a pidfd where there is one), so its id cannot have been reused.
    """
    try:
        process.stdin.write(request)
        process.stdin.close()
    except BrokenPipeError:
        pass  # the child died at start-up; the verdict says so
    deadline = time.monotonic() + timeout
    timed_out = not _wait_unreaped(process, deadline)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()
    return timed_out


def _wait_unreaped(process: subprocess.Popen, deadline: float) -> bool:
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(process.pid)
        except OSError:
            pidfd = -1
        if pidfd >= 0:
            try:
                return bool(select.select([pidfd], [], [], max(0.0, deadline - time.monotonic()))[0])
            finally:
                os.close(pidfd)
    try:  # elsewhere: reap, then kill what is left of the group (its id could in theory be reused)
        process.wait(max(0.0, deadline - time.monotonic()))
        return True
    except subprocess.TimeoutExpired:
        return False


def _read_report(fd: int, nonce: str) -> tuple[bool, tuple[str, str, tuple[str, ...]] | None]:
    """Whether the child got as far as running the code, and its final (status, detail, layers): from the
    lines that carry the secret."""
    os.set_blocking(fd, False)  # a descendant that escaped the kill must not hang the parent
    data = b""
    while len(data) < _MAX_REPORT_BYTES:
        try:
            chunk = os.read(fd, _MAX_REPORT_BYTES)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    started, final = False, None
    for line in data.decode("utf-8", "replace").splitlines():
        parts = line.split(" ", 3)
        if len(parts) == 4 and parts[0] == nonce:
            layers = tuple(layer for layer in parts[2].split(",") if layer != "-")
            if parts[1] == "started":
                started = True
            elif final is None:
                final = (parts[1], parts[3], layers)
    return started, final


def _tail(output) -> str:
    size = output.seek(0, os.SEEK_END)
    output.seek(max(0, size - 4 * OUTPUT_TAIL))
    return output.read().decode("utf-8", "replace")[-OUTPUT_TAIL:]


def _verdict(process, report, timed_out: bool, seconds: float, printed: str) -> SandboxResult:
    started, final = report
    returncode = process.returncode
    if final is not None and final[0] == "internal":
        raise SandboxError(f"the sandbox failed before running the code: {final[1]}")
    if not started:
        why = "the time limit ran out" if timed_out else f"it ended with code {returncode}: {printed[-500:]!r}"
        raise SandboxError(f"the sandbox process did not get as far as running the code ({why})")
    if timed_out or returncode == -signal.SIGXCPU:
        status, detail = "timeout", "the time limit ran out"
    elif final is not None and final[0] in ("passed", "failed", "memory", "error", "syntax"):
        status, detail = final[0], final[1]
    elif "MemoryError" in printed:
        status, detail = "memory", "the memory limit ran out"
    else:
        how = f"signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
        status, detail = "error", f"the code ended the process ({how}) before the tests finished"
    layers = final[2] if final is not None else ()
    return SandboxResult(status == "passed", status, detail, seconds, printed, layers, process.pid)


def _remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    if os.path.exists(path):  # the code took away its own permissions: give them back and retry
        os.chmod(path, 0o700)
        for folder, subfolders, _ in os.walk(path):
            for name in subfolders:
                os.chmod(os.path.join(folder, name), 0o700)
        shutil.rmtree(path, ignore_errors=True)


def _split_tests(tests: str) -> list[tuple[str, str | None, str | None]]:
    """Each statement of ``tests`` as (source, call, expected literal), or (source, None, None) when it
    is not an ``assert <call> == <literal>``. Parsed here, where it cannot be tampered with."""
    try:
        module = ast.parse(tests)
    except SyntaxError as error:
        raise SandboxError(f"the hidden tests do not parse: {error}") from error
    split = []
    for statement in module.body:
        source = ast.get_source_segment(tests, statement) or ast.unparse(statement)
        test = statement.test if isinstance(statement, ast.Assert) else None
        if (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)
                and _is_literal(test.comparators[0])):
            split.append((source, ast.unparse(test.left), ast.unparse(test.comparators[0])))
        else:
            split.append((source, None, None))
    if not split:
        raise SandboxError("there are no hidden tests")
    return split


def _is_literal(node: ast.AST) -> bool:
    try:
        ast.literal_eval(node)
        return True
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
