"""Shared pieces of the benchmarks in bench/: sample streams, nginx, measuring, reporting.

Nothing here runs on import. Every process started here is stopped by PID when its
context ends (also on Ctrl-C); nothing listens anywhere but 127.0.0.1. Raises
:class:`BenchError` when a step fails, with a message naming the step.
"""

from __future__ import annotations

import json
import os
import platform
import pwd
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "RESULTS.md"
ANALYSIS = "### Analysis"
MIB = 1 << 20
GIB = 1 << 30
T = TypeVar("T")
RUN_TIMEOUT_S = 120.0
# The machine may be shared: a run during which the rest of it (servers included) used
# more than this many cores on average counts as disturbed.
DISTURBED_CORES = 0.25
QUIET_WAIT_S = 20.0


class BenchError(Exception):
    """A step failed; the message says which one and why."""


@dataclass(frozen=True)
class Stream:
    """A sample stream on disk and the data files its products documents list."""

    root: Path
    keyring: Path
    file_size: int
    files: Mapping[str, int]  # path -> size

    @property
    def total(self) -> int:
        return sum(self.files.values())


# ---------------------------------------------------------------- programs and streams


def find_program(name: str, *candidates: Path) -> Path:
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    found = shutil.which(name)
    if found is None:
        raise BenchError(
            f"{name} not found (looked in {', '.join(map(str, candidates))} "
            "and $PATH); run `make setup`"
        )
    return Path(found)


def find_sstream_mirror() -> Path:
    """sstream-mirror from ``$SSTREAM_BIN`` or the repo's .venv-simplestreams."""
    dirs = [Path(os.environ["SSTREAM_BIN"])] if os.environ.get("SSTREAM_BIN") else []
    return find_program(
        "sstream-mirror",
        *(d / "sstream-mirror" for d in dirs),
        REPO / ".venv-simplestreams/bin/sstream-mirror",
    )


def ensure_nginx() -> Path:
    """nginx on PATH (or /usr/sbin), installed with apt-get when missing."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if found:
        return Path(found)
    print("nginx missing: apt-get install -y nginx", flush=True)
    install = ["apt-get", "install", "-y", "nginx"]
    if subprocess.run(install, check=False, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(install, check=True, stdout=subprocess.DEVNULL)
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if not found:
        raise BenchError("apt-get installed nginx but no nginx binary was found")
    return Path(found)


def stream_files(root: Path) -> dict[str, int]:
    """Every item path and size in the stream's products documents."""
    index = json.loads((root / "streams/v1/index.json").read_bytes())
    files: dict[str, int] = {}
    for entry in index["index"].values():
        doc = json.loads((root / entry["path"]).read_bytes())
        for product in doc["products"].values():
            for version in product["versions"].values():
                for item in version["items"].values():
                    if "path" in item:
                        files[item["path"]] = int(item["size"])
    return files


def make_stream(
    bootsync: Path, work: Path, size_text: str, file_size: int, *, versions: int = 2
) -> Stream:
    """The sample stream ``work/streams/stream-<size>[-v<versions>]``, reused when present.

    The name has no ``-v`` suffix for the default two versions per product.
    """
    suffix = "" if versions == 2 else f"-v{versions}"
    root = work / "streams" / f"stream-{size_text}{suffix}"
    marker = root / ".bench-file-size"
    if not (marker.is_file() and marker.read_text().strip() == str(file_size)):
        shutil.rmtree(root, ignore_errors=True)
        print(
            f"writing sample stream {root} (--file-size {size_text} --versions {versions})",
            flush=True,
        )
        subprocess.run(
            [
                str(bootsync),
                "--log-level",
                "warning",
                "sample-stream",
                str(root),
                "--file-size",
                size_text,
                "--versions",
                str(versions),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        marker.write_text(f"{file_size}\n")
    stream = Stream(
        root=root,
        keyring=root / "sample-keyring.gpg",
        file_size=file_size,
        files=stream_files(root),
    )
    large = sum(1 for size in stream.files.values() if size == file_size)
    print(
        f"stream {root.name}: {len(stream.files)} files ({large} of {size_text}), "
        f"{stream.total} bytes = {stream.total / GIB:.2f} GiB",
        flush=True,
    )
    return stream


def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+)([KMG]?)", text.strip().upper())
    if match is None:
        raise BenchError(f"{text!r} is not a size such as 40M")
    return int(match[1]) << {"": 0, "K": 10, "M": 20, "G": 30}[match[2]]


# ---------------------------------------------------------------- nginx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(
    port: int, proc: subprocess.Popen[bytes], what: str, timeout_s: float = 10.0
) -> None:
    """Wait until 127.0.0.1:``port`` accepts; BenchError if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited ({proc.returncode}) before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            if time.monotonic() > deadline:
                raise BenchError(f"{what} did not listen on 127.0.0.1:{port}") from None
            time.sleep(0.05)
        else:
            return


NGINX_CONF = """\
{user}worker_processes 2;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
"""


@contextmanager
def nginx_serving(nginx: Path, root: Path, prefix: Path) -> Iterator[str]:
    """Serve ``root`` on a free loopback port; yields the base URL; stops nginx by PID."""
    with nginx_process(nginx, root, prefix) as (url, _proc):
        yield url


@contextmanager
def nginx_process(
    nginx: Path, root: Path, prefix: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """As :func:`nginx_serving`, also yielding the master process (for its CPU time)."""
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    port = free_port()
    # As root, the workers would drop to "nobody", who may not read the work dir.
    user = f"user {pwd.getpwuid(0).pw_name};\n" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user=user, prefix=prefix, port=port, root=root))
    log = (prefix / "nginx.out").open("wb")
    proc = subprocess.Popen(
        [str(nginx), "-p", str(prefix), "-c", str(conf)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        try:
            wait_listening(port, proc, "nginx")
        except BenchError as exc:
            raise BenchError(f"{exc}: {(prefix / 'nginx.out').read_text()[-500:]}") from None
        print(f"nginx {proc.pid} serving {root} on 127.0.0.1:{port}", flush=True)
        yield f"http://127.0.0.1:{port}/", proc
    finally:
        stop_process(proc)
        log.close()


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL to its process group after ``timeout_s``; reaps it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ---------------------------------------------------------------- measuring


def busy_cpu_s() -> float:
    """User + system CPU seconds the whole machine has spent since boot."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    user, nice, system = (int(v) for v in fields[1:4])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


def user_cpu_s() -> float:
    """User CPU seconds the whole machine has spent since boot.

    Other people's work shows here; our own runs' kernel work (loopback copies,
    page-cache writeback by kernel threads) does not.
    """
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return (int(fields[1]) + int(fields[2])) / os.sysconf("SC_CLK_TCK")


def process_cpu_s(pids: Iterable[int], *, children: bool = True, user_only: bool = False) -> float:
    """User + system CPU seconds the live processes ``pids`` have used (0 for gone ones).

    ``children`` adds what their children used once reaped (gpg, for our daemons);
    ``user_only`` leaves system time out.
    """
    total = 0.0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        utime, stime, cutime, cstime = (int(v) for v in stat.rsplit(")", 1)[1].split()[11:15])
        used = utime + (0 if user_only else stime)
        if children:
            used += cutime + (0 if user_only else cstime)
        total += used / os.sysconf("SC_CLK_TCK")
    return total


def children_of(pid: int) -> list[int]:
    """``pid`` and its direct children (nginx: master and workers)."""
    found = [pid]
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        for task in tasks:
            found += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return found


@dataclass(frozen=True)
class Measured:
    """What one process tree used."""

    seconds: float
    rss_kib: int
    rss_floor_kib: int  # this script's own peak: ru_maxrss of a child never reads below it
    cpu_s: float
    other_cpu_s: float  # CPU the rest of the machine (servers included) used meanwhile
    other_user_s: float = 0.0  # user CPU of the rest of the machine meanwhile
    user_s: float = 0.0  # the user part of cpu_s


def measure(
    argv: list[str], env: Mapping[str, str], log: Path, *, timeout_s: float = RUN_TIMEOUT_S
) -> Measured:
    """Run ``argv`` to completion and measure it. Raises BenchError if it fails.

    Linux keeps a process's ru_maxrss across exec, and a child spawned from here
    starts with this script's peak RSS; so a child's figure is never below ours
    (``rss_floor_kib``), and one at that floor is only an upper bound.
    """
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with log.open("wb") as out:
        busy_before, user_before = busy_cpu_s(), user_cpu_s()
        started = time.monotonic()
        proc = subprocess.Popen(
            argv,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        status, usage = wait_rusage(proc, timeout_s)
        seconds = time.monotonic() - started
        busy, user = busy_cpu_s() - busy_before, user_cpu_s() - user_before
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = log.read_text(errors="replace")[-1500:]
        raise BenchError(
            f"{' '.join(argv[:2])} … exited {code} (timeout "
            f"{timeout_s:.0f} s if killed); log {log}:\n{tail}"
        )
    cpu = usage.ru_utime + usage.ru_stime
    return Measured(
        seconds=seconds,
        rss_kib=usage.ru_maxrss,
        rss_floor_kib=floor,
        cpu_s=cpu,
        other_cpu_s=max(0.0, busy - cpu),
        other_user_s=max(0.0, user - usage.ru_utime),
        user_s=usage.ru_utime,
    )


def wait_rusage(
    proc: subprocess.Popen[bytes], timeout_s: float
) -> tuple[int, resource.struct_rusage]:
    """Reap ``proc`` with wait4 (its group is SIGKILLed after ``timeout_s``, or on Ctrl-C)."""
    timer = threading.Timer(timeout_s, _kill_group, (proc.pid,))
    timer.start()
    try:
        _pid, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        _kill_group(proc.pid)
        proc.wait()
        raise
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return status, usage


def _kill_group(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


class Pacer:
    """Keeps runs away from other work on a shared machine, within a time budget.

    Before each run it waits (at most QUIET_WAIT_S) until the machine uses under
    DISTURBED_CORES (``user_only``: of user CPU); past the deadline it neither waits
    nor redoes runs.
    """

    def __init__(self, budget_s: float, *, user_only: bool = False) -> None:
        self._deadline = time.monotonic() + budget_s
        self._cpu_s = user_cpu_s if user_only else busy_cpu_s

    def in_budget(self) -> bool:
        return time.monotonic() < self._deadline

    def settle(self, extra_busy_cores: float = 0.0) -> None:
        """Wait for quiet; ``extra_busy_cores`` is what our own idle daemons may use."""
        give_up = min(self._deadline, time.monotonic() + QUIET_WAIT_S)
        while time.monotonic() < give_up:
            before = self._cpu_s()
            time.sleep(0.5)
            if self._cpu_s() - before < (DISTURBED_CORES + extra_busy_cores) * 0.5:
                return


def least_disturbed(
    attempt: Callable[[int], T], busy_cores: Callable[[T], float], *, pacer: Pacer, redo: int = 2
) -> tuple[T, int]:
    """Run ``attempt(n)`` until one is undisturbed; the least disturbed one and redo count.

    ``busy_cores`` tells how many cores the rest of the machine used on average
    during a sample; above DISTURBED_CORES it is redone, at most ``redo`` times and
    only while ``pacer`` is in budget.
    """
    samples: list[T] = []
    for n in range(1 + redo):
        samples.append(attempt(n))
        if busy_cores(samples[-1]) <= DISTURBED_CORES or not pacer.in_budget():
            break
    return min(samples, key=busy_cores), len(samples) - 1


def percentile(values: list[float], pct: float) -> float:
    """The ``pct`` percentile (0–100) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        raise BenchError("no values for a percentile")
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# ---------------------------------------------------------------- reporting


@dataclass(frozen=True)
class Verdict:
    """One target: what was measured against what was wanted."""

    what: str
    measured: str
    target: str
    ok: bool

    def line(self) -> str:
        return (
            f"{'PASS' if self.ok else 'MISS'}  {self.what}: {self.measured} (target {self.target})"
        )


def machine() -> str:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    return (
        f"nproc {nproc.strip()}, CPU {cpu}, {mem:.0f} GiB RAM, kernel "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def versions(nginx: Path, sstream: Path) -> str:
    from importlib.metadata import version  # noqa: PLC0415 - only for the report

    ngx = subprocess.run([str(nginx), "-v"], capture_output=True, text=True, check=False)
    curl = subprocess.run(["curl", "--version"], capture_output=True, text=True, check=False)
    pkg = subprocess.run(
        [
            str(sstream.parent / "python"),
            "-c",
            "from importlib.metadata import version as v; print(v('python-simplestreams'))",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return (
        f"{ngx.stderr.strip()}; {' '.join(curl.stdout.split()[:2])}; python-simplestreams "
        f"{pkg.stdout.strip() or '?'}; aiohttp {version('aiohttp')}, "
        f"uvloop {version('uvloop')}"
    )


def shipped_loops() -> str:
    """The event loops the daemons ship with (``REGION_LOOP`` / ``RACK_LOOP`` in their mains)."""
    found = []
    for daemon, path, name in (
        ("region", "region/main.py", "REGION_LOOP"),
        ("rack", "rack/main.py", "RACK_LOOP"),
    ):
        match = re.search(rf'^{name}\b.*?"(\w+)"', (REPO / path).read_text(), re.MULTILINE)
        found.append(f"{daemon} {match[1] if match else 'unknown'}")
    loop = os.environ.get("BOOTSYNC_EVENT_LOOP")
    return ", ".join(found) + (f" (overridden: BOOTSYNC_EVENT_LOOP={loop})" if loop else "")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def utc_date() -> str:
    return subprocess.run(["date", "-u"], capture_output=True, text=True, check=True).stdout.strip()


def write_section(title: str, text: str) -> None:
    """Replace the section ``title`` of RESULTS.md, or append it; other sections stay.

    The file is read just before it is replaced (other benchmarks edit it too) and
    written to a temporary file renamed over it, so a reader never sees half of it.
    A hand-written ``### Analysis`` subsection of the old section is carried over.
    """
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    chunks = re.split(r"(?m)^(?=## )", old)
    ours = [c for c in chunks if c.startswith(title)]
    kept = [c for c in chunks if not c.startswith(title)]
    analysis = ours[0].find(ANALYSIS) if ours else -1
    if analysis >= 0:
        text += "\n" + ours[0][analysis:].rstrip("\n") + "\n"
    new = "".join(kept).rstrip("\n") + "\n\n" + text
    temp = RESULTS.with_name(f".{RESULTS.name}.{os.getpid()}.tmp")
    temp.write_text(new)
    temp.replace(RESULTS)


def synthetic_sets(count: int) -> list[Any]:
    """``count`` synthetic Ubuntu resources, each one complete set of three files, as
    ``region.db.imports.WantedSet`` (for the API benchmarks' databases)."""
    import hashlib  # noqa: PLC0415 - only the seeding child needs these

    from region.db.imports import WantedFile, WantedSet  # noqa: PLC0415

    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    wanted = []
    for i in range(count):
        release, sub = f"bench{i // 4:03d}", ("ga-24.04", "hwe-24.04", "generic", "hwe-v")[i % 4]
        files = tuple(
            WantedFile(
                filename=name,
                filetype=name,
                sha256=sha(f"{i}/{name}"),
                size=size,
                extra={"kpackage": "linux-generic"} if name != "squashfs" else {},
            )
            for name, size in (
                ("boot-kernel", 14 << 20),
                ("boot-initrd", 70 << 20),
                ("squashfs", 300 << 20),
            )
        )
        wanted.append(
            WantedSet(
                name=f"ubuntu/{release}",
                architecture=f"amd64/{sub}",
                kflavor="generic",
                bootloader_type=None,
                rolling=False,
                version="20250718",
                label="stable",
                extra={
                    "subarches": f"generic,{sub}",
                    "title": f"Ubuntu {release}",
                    "label": "stable",
                    "release": release,
                    "version": "24.04",
                },
                files=files,
            )
        )

    return wanted
