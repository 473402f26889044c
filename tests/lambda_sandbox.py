"""Run a zappa package the way AWS Lambda's python3.12 runtime does, on this machine.

What Lambda does, and what stands in for it here:

- The package is unzipped into a read-only task root (``/var/task``): here a fresh directory,
  made read-only, used by an unprivileged user when the tests run as root (root ignores file
  modes; Lambda's own process is a non-root ``sbx_user``).
- A fresh interpreter of the runtime's Python starts isolated (``-I -S``: no user site, no
  ``PYTHON*`` variables, and no site-packages of this machine's interpreter), with the
  environment cleared to what Lambda sets plus the function's variables, cwd the task root and
  ``sys.path`` the task root plus ONE directory with what AWS's runtime provides (its boto3
  stack and ``awslambdaric``, the runtime's bootstrap).
- ``awslambdaric`` imports the handler by its configured name and asks a Runtime API for
  events: :class:`RuntimeApi` is a small one, so the real bootstrap loads and calls the handler.

An audit hook in the sandbox reports every write outside ``/tmp`` (and inside the task root or
the runtime directory) on stderr, and which top-level modules are imported, so a test can
assert that init imports no boto3 and that nothing is written where Lambda's disk is read-only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import shutil
import stat
import subprocess
import tempfile
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SANDBOX_USER = 65534  # nobody / nogroup: Lambda's functions never run as root
WRITE_MARK = "LAMBDA-SANDBOX-WRITE"
IMPORT_MARK = "LAMBDA-SANDBOX-IMPORT"
LAMBDA_PATH = "/usr/local/bin:/usr/bin/:/bin:/opt/bin"
INIT_TIMEOUT = 60.0
INVOKE_TIMEOUT = 60.0
API_PREFIX = "/2018-06-01/runtime"

# Runs inside the sandbox before the bootstrap: sys.path as Lambda's, and the audit hook.
SETUP = r"""
import os, sys
task, runtime = os.environ["LAMBDA_TASK_ROOT"], os.environ["LAMBDA_RUNTIME_DIR"]
sys.path[:0] = [task, runtime]
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
PATH_EVENTS = {"os.mkdir", "os.remove", "os.rmdir", "os.rename", "os.replace", "os.symlink",
               "os.link", "os.truncate", "os.chmod", "os.chown", "os.utime", "shutil.rmtree"}
imported = set()

def forbidden(path):
    if isinstance(path, int):
        return None
    path = os.fsdecode(path) if isinstance(path, bytes) else str(path)
    full = os.path.realpath(os.path.join(task, path))
    inside = lambda root: full == root or full.startswith(root.rstrip("/") + "/")
    read_only = (task, runtime, sys.base_prefix)
    if (inside("/tmp") or full == "/dev/null") and not any(inside(root) for root in read_only):
        return None
    return full

def report(mark, text):
    os.write(2, f"{mark} {text}\n".encode(errors="replace"))

def hook(event, args):
    if event == "import":
        top = str(args[0]).partition(".")[0]
        if top not in imported:
            imported.add(top)
            report("LAMBDA-SANDBOX-IMPORT", top)
    elif event == "open":
        path, mode, flags = args
        writing = any(c in (mode or "") for c in "wax+") or bool(flags & WRITE_FLAGS)
        if writing and (where := forbidden(path)):
            report("LAMBDA-SANDBOX-WRITE", f"open {where}")
    elif event in PATH_EVENTS:
        for path in args[:2] if event in {"os.rename", "os.replace", "os.link"} else args[:1]:
            if (where := forbidden(path)):
                report("LAMBDA-SANDBOX-WRITE", f"{event} {where}")

sys.addaudithook(hook)
"""
BOOTSTRAP = r"""
from awslambdaric.__main__ import main
main(["awslambdaric", os.environ["_HANDLER"]])
"""
LAUNCHER = SETUP + BOOTSTRAP


class SandboxError(AssertionError):
    """The sandboxed function did not start, crashed, or did not answer."""


@dataclass
class Invocation:
    """One event's outcome: the handler's JSON result, or the error the runtime reported."""

    request_id: str
    result: Any = None
    error: dict[str, Any] | None = None
    seconds: float = 0.0


@dataclass
class _Pending:
    request_id: str
    event: bytes
    done: threading.Event = field(default_factory=threading.Event)
    outcome: Invocation | None = None


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A runtime stopped mid-request resets its connection: not worth a traceback."""


class RuntimeApi:
    """Lambda's Runtime API (the part a bootstrap uses), served on 127.0.0.1.

    ``GET /invocation/next`` blocks until :meth:`invoke` queues an event; the bootstrap answers
    with ``POST /invocation/{id}/response`` or ``/error``; ``POST /init/error`` reports a handler
    that could not be loaded. The first ``/next`` marks the end of the init phase.
    """

    def __init__(self, function_arn: str, on_first_next: Any = None) -> None:
        self.function_arn = function_arn
        self.events: queue.Queue[_Pending | None] = queue.Queue()
        self.pending: dict[str, _Pending] = {}
        self.init_error: dict[str, Any] | None = None
        self.init_done = threading.Event()
        self.init_done_at: float | None = None
        self.on_first_next = on_first_next
        self.closed = False
        self.server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.closed = True
        self.events.put(None)
        self.server.shutdown()
        self.server.server_close()

    def invoke(self, event: Any, timeout: float = INVOKE_TIMEOUT) -> Invocation:
        pending = _Pending(str(uuid.uuid4()), json.dumps(event).encode())
        self.pending[pending.request_id] = pending
        started = time.perf_counter()
        self.events.put(pending)
        if not pending.done.wait(timeout):
            raise SandboxError(f"no answer to invocation {pending.request_id} in {timeout}s")
        assert pending.outcome is not None
        pending.outcome.seconds = time.perf_counter() - started
        return pending.outcome

    def _next(self) -> _Pending | None:
        if not self.init_done.is_set():
            self.init_done_at = time.perf_counter()
            if self.on_first_next:
                self.on_first_next()
            self.init_done.set()
        while not self.closed:
            try:
                return self.events.get(timeout=0.5)
            except queue.Empty:
                continue
        return None

    def _finish(self, request_id: str, result: Any = None, error: Any = None) -> bool:
        pending = self.pending.pop(request_id, None)
        if pending is None:
            return False
        pending.outcome = Invocation(request_id, result=result, error=error)
        pending.done.set()
        return True

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _reply(self, status: int, body: bytes = b"", headers: Any = ()) -> None:
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                # The runtime may be gone (stopped while it waited for an event).
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                if self.path != f"{API_PREFIX}/invocation/next":
                    return self._reply(404, b'{"errorMessage":"unknown path"}')
                pending = api._next()
                if pending is None:
                    return self._reply(500, b'{"errorMessage":"runtime shutting down"}')
                deadline = int((time.time() + INVOKE_TIMEOUT) * 1000)
                headers = [
                    ("Lambda-Runtime-Aws-Request-Id", pending.request_id),
                    ("Lambda-Runtime-Deadline-Ms", str(deadline)),
                    ("Lambda-Runtime-Invoked-Function-Arn", api.function_arn),
                    (
                        "Lambda-Runtime-Trace-Id",
                        f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]};Sampled=0",
                    ),
                ]
                self._reply(200, pending.event, headers)

            def do_POST(self) -> None:  # noqa: N802
                body = self._body()
                path = self.path.removeprefix(API_PREFIX)
                if path == "/init/error":
                    api.init_error = _json_or_text(body)
                    api.init_done.set()
                    return self._reply(202, b'{"status":"OK"}')
                parts = path.strip("/").split("/")
                if (
                    len(parts) == 3
                    and parts[0] == "invocation"
                    and parts[2] in ("response", "error")
                ):
                    payload = _json_or_text(body)
                    if parts[2] == "response":
                        found = api._finish(parts[1], result=payload)
                    else:
                        found = api._finish(parts[1], error=payload)
                    return self._reply(202 if found else 400, b'{"status":"OK"}')
                self._reply(404, b'{"errorMessage":"unknown path"}')

        return Handler


def _json_or_text(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode(errors="replace")


def lambda_environment(
    function_name: str,
    handler: str,
    region: str,
    function_variables: dict[str, str],
    memory_mb: int = 512,
) -> dict[str, str]:
    """What Lambda's python3.12 runtime sets for a function, plus its own variables."""
    return {
        "PATH": LAMBDA_PATH,
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/12/01/[$LATEST]0123456789abcdef0123456789abcdef",
        # The execution role's temporary credentials (never valid here: nothing reaches AWS).
        "AWS_ACCESS_KEY_ID": "ASIASANDBOXEXAMPLE00",
        "AWS_SECRET_ACCESS_KEY": "sandbox-secret-access-key-not-valid-anywhere",
        "AWS_SESSION_TOKEN": "sandbox-session-token",
        "_HANDLER": handler,
        **function_variables,
    }


def tree_state(root: Path) -> str:
    """A digest of every path, size, mode and modification time under ``root``."""
    digest = hashlib.sha256()
    for directory, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted([*dirs, *files]):
            path = Path(directory, name)
            info = path.lstat()
            line = f"{path.relative_to(root)}\0{info.st_size}\0{info.st_mode}\0{info.st_mtime_ns}\n"
            digest.update(line.encode())
    return digest.hexdigest()


def _read_only(root: Path, files: bool = True) -> None:
    for directory, _dirs, names in os.walk(root):
        for name in names if files else ():
            path = Path(directory, name)
            path.chmod(stat.S_IMODE(path.lstat().st_mode) & ~0o222)
    for directory, _dirs, _files in os.walk(root, topdown=False):
        Path(directory).chmod(0o555)


def _writable(root: Path) -> None:
    for directory, _dirs, _files in os.walk(root):
        Path(directory).chmod(0o755)


class LambdaSandbox:
    """One Lambda execution environment: init once, then any number of invocations.

    Use as a context manager; ``init_seconds`` is the time from starting the interpreter to its
    first ``/next`` (Lambda's init phase), ``imports_at_init`` the top-level modules imported by
    then, ``writes`` every write attempted outside /tmp, ``stdout``/``stderr`` the logs.
    """

    def __init__(
        self,
        package: Path,
        runtime_dir: Path,
        python: str,
        environment: dict[str, str],
        function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:sandbox",
    ) -> None:
        self.package = package
        self.python = python
        self.environment = environment
        self.api = RuntimeApi(function_arn, on_first_next=self._mark_init)
        self.scratch = Path(tempfile.mkdtemp(prefix="lambda-sandbox-", dir=_scratch_base()))
        self.task_root = self.scratch / "task"
        self.image = runtime_image(runtime_dir, Path(python))
        self.runtime_dir = self.image / "runtime"
        self.lang_dir = self.image / "lang"
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.init_seconds: float | None = None
        self._stderr_at_init = 0
        self._task_state_before = ""

    # ------------------------------------------------------------ life cycle

    def __enter__(self) -> LambdaSandbox:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def interpreter(self) -> Path:
        return self.lang_dir / "bin" / Path(self.python).resolve().name

    def _process_environment(self) -> dict[str, str]:
        return {
            **self.environment,
            "LAMBDA_TASK_ROOT": str(self.task_root),
            "LAMBDA_RUNTIME_DIR": str(self.runtime_dir),
            "AWS_LAMBDA_RUNTIME_API": self.api.address,
            # As on Lambda (/var/lang/lib first): the interpreter's shared library.
            "LD_LIBRARY_PATH": f"{self.lang_dir / 'lib'}:/lib64:/usr/lib64:{self.task_root}",
        }

    @staticmethod
    def _as_user() -> dict[str, Any]:
        if os.geteuid() == 0:
            return {"user": SANDBOX_USER, "group": SANDBOX_USER, "extra_groups": []}
        return {}

    def start(self) -> None:
        self.scratch.chmod(0o755)
        with zipfile.ZipFile(self.package) as archive:
            archive.extractall(self.task_root)
        _read_only(self.task_root)
        self._task_state_before = tree_state(self.task_root)
        self.stdout_file = open(self.scratch / "stdout.log", "w+b")  # noqa: SIM115
        self.stderr_file = open(self.scratch / "stderr.log", "w+b")  # noqa: SIM115
        self.api.start()
        env = self._process_environment()
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen(
            [str(self.interpreter), "-I", "-S", "-c", LAUNCHER],
            cwd=self.task_root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.stdout_file,
            stderr=self.stderr_file,
            **self._as_user(),
        )
        deadline = time.monotonic() + INIT_TIMEOUT
        while not self.api.init_done.wait(0.05):
            if self.process.poll() is not None:
                raise SandboxError(f"the runtime exited during init:\n{self.stderr[-4000:]}")
            if time.monotonic() > deadline:
                raise SandboxError(f"init took over {INIT_TIMEOUT}s:\n{self.stderr[-4000:]}")
        if self.api.init_error is not None:
            raise SandboxError(f"init error: {self.api.init_error}\n{self.stderr[-4000:]}")

    def _mark_init(self) -> None:
        self.init_seconds = time.perf_counter() - self.started_at
        self._stderr_at_init = os.fstat(self.stderr_file.fileno()).st_size

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.api.close()
        if self.task_root.exists():
            _writable(self.task_root)
        shutil.rmtree(self.scratch, ignore_errors=True)

    # ------------------------------------------------------------ use

    def invoke(self, event: Any, timeout: float = INVOKE_TIMEOUT) -> Invocation:
        if self.process is None or self.process.poll() is not None:
            raise SandboxError(f"the runtime is not running:\n{self.stderr[-4000:]}")
        return self.api.invoke(event, timeout)

    def run_script(
        self, code: str, *args: str, environment: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run ``code`` instead of the bootstrap in another process of this environment (same
        interpreter, user, read-only task root and runtime directory, the function's variables
        plus ``environment``): a harness that drives the handler and the runtime's own
        modules (its SnapStart hooks runner) itself. Call after ``start``."""
        return subprocess.run(
            [str(self.interpreter), "-I", "-S", "-c", SETUP + code, *args],
            cwd=self.task_root,
            env={**self._process_environment(), **(environment or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            **self._as_user(),
        )

    def _log(self, file: Any) -> str:
        file.flush()
        with open(file.name, "rb") as reader:
            return reader.read().decode(errors="replace")

    @property
    def stdout(self) -> str:
        return self._log(self.stdout_file)

    @property
    def stderr(self) -> str:
        return self._log(self.stderr_file)

    def _marked(self, mark: str, text: str) -> list[str]:
        return [line[len(mark) + 1 :] for line in text.splitlines() if line.startswith(mark)]

    @property
    def imports_at_init(self) -> set[str]:
        with open(self.stderr_file.name, "rb") as reader:
            text = reader.read(self._stderr_at_init).decode(errors="replace")
        return set(self._marked(IMPORT_MARK, text))

    @property
    def imports(self) -> set[str]:
        return set(self._marked(IMPORT_MARK, self.stderr))

    @property
    def writes(self) -> list[str]:
        return self._marked(WRITE_MARK, self.stderr)

    def task_root_unchanged(self) -> bool:
        return tree_state(self.task_root) == self._task_state_before


def _scratch_base() -> str:
    """Memory-backed when there is one: unzipping ~6 000 files onto a busy disk takes seconds."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else tempfile.gettempdir()


def runtime_image(runtime_dir: Path, python: Path) -> Path:
    """The runtime's read-only part (Lambda's ``/var/lang`` and ``/var/runtime``), made once.

    Hard links into a directory the sandbox user can read: the caches may sit in a home
    directory it cannot enter. Kept between runs (a few thousand files take seconds to link
    and to remove), under a name that changes with its sources.
    """
    key = hashlib.sha256(f"{runtime_dir.resolve()}\0{python.resolve()}".encode()).hexdigest()[:12]
    image = Path(tempfile.gettempdir()) / f"lambda-runtime-image-{os.geteuid()}-{key}"
    if (image / ".complete").exists():
        return image
    building = Path(tempfile.mkdtemp(prefix=f"{image.name}-", dir=image.parent))
    shutil.copytree(runtime_dir, building / "runtime", copy_function=_link_or_copy)
    _install_interpreter(python, building / "lang")
    (building / ".complete").write_text(f"{runtime_dir}\n{python}\n")
    # Folders only: the files are links to the caches' own (and the sandbox user cannot write
    # a file it does not own); no folder of the image can gain or lose an entry.
    for directory in (building / "runtime", building / "lang"):
        _read_only(directory, files=False)
    building.chmod(0o555)
    try:
        building.rename(image)
    except OSError:  # built by a concurrent run meanwhile: use theirs
        building.chmod(0o755)
        for directory in (building / "runtime", building / "lang"):
            _writable(directory)
        shutil.rmtree(building, ignore_errors=True)
    return image


STDLIB_LEFT_OUT = {"test", "site-packages", "idlelib", "tkinter", "turtledemo", "ensurepip"}


def _install_interpreter(python: Path, lang: Path) -> Path:
    """The runtime's Python under ``lang`` (Lambda's ``/var/lang``), by hard links: this
    machine's copy may sit in a home directory the sandbox user cannot enter. Its own
    site-packages stay behind: on Lambda only the runtime directory provides packages."""
    prefix = python.resolve().parent.parent
    version = python.resolve().name.removeprefix("python")
    library = prefix / "lib" / f"python{version}"
    (lang / "bin").mkdir(parents=True)
    (lang / "lib").mkdir()
    _link_or_copy(str(python.resolve()), str(lang / "bin" / python.resolve().name))
    for shared in (prefix / "lib").glob("libpython*.so*"):
        _link_or_copy(str(shared), str(lang / "lib" / shared.name))
    shutil.copytree(
        library,
        lang / "lib" / library.name,
        copy_function=_link_or_copy,
        ignore=lambda directory, names: (
            STDLIB_LEFT_OUT & set(names) if Path(directory) == library else set()
        ),
    )
    return lang / "bin" / python.resolve().name


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)
