"""A real region process, a fake upstream and one Chromium for the browser tests.

The upstream (tests/fakes/upstream.py) runs on its own event loop in a thread,
so the tests drive the browser with Playwright's synchronous API. The region is
``python -m region`` on 127.0.0.1 importing from it; users are made with
``bootsync createadmin`` (admin) and the password repository (a viewer, and a
user the login rate-limit test locks out). ``rack`` starts a real
``python -m rack`` registered with that region (once, for the tests that ask).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from common.mirror.samplestream import SampleStream, write_sample_stream
from common.trust.keyrings import SigningKey
from region.db import users as repo_users
from region.db import web_auth
from region.db.connection import open_db
from tests.fakes.daemons import REPO, free_port
from tests.fakes.streams import short_dir
from tests.fakes.upstream import FakeUpstream

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN = ("admin", "correct horse battery")
VIEWER = ("viewer", "viewer password 1")
LOCKED = ("locked", "locked password 1")
RACK_HOSTNAME = "rack-browser"
# Screenshots go to a throwaway directory; `make screenshots` points this at docs/
# to refresh the README's pictures (a test run never changes tracked files).
SHOTS = Path(
    os.environ.get("BOOTSYNC_SCREENSHOTS_DIR") or tempfile.mkdtemp(prefix="bootsync-shots-")
)
FILE_SIZE = 256 << 10


class ThreadedUpstream:
    """A FakeUpstream serving on an event loop in a background thread."""

    def __init__(self, root: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.upstream = FakeUpstream()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.upstream.start(), self.loop).result(10)
        self.upstream.serve_directory(root)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.upstream.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@dataclass
class RegionProcess:
    """The running region: its URL, data dir, log and the upstream it imports from."""

    url: str
    data_dir: Path
    log: Path
    upstream: FakeUpstream
    stream: SampleStream

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="package")
def sample(upstream_key: SigningKey) -> Iterator[SampleStream]:
    with short_dir("bsu") as root:
        yield write_sample_stream(root, file_size=FILE_SIZE, signing_key=upstream_key)


def _cli(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "common.cli", "--log-level", "warning", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
        timeout=60,
    )
    return out.stdout


async def _make_users(db_path: Path) -> None:
    async with open_db(db_path) as conn:
        for name, password in (VIEWER, LOCKED):
            user = await repo_users.create_user(conn, name, is_admin=False)
            await web_auth.set_password(conn, user.id, password)


def _wait_healthy(
    url: str, proc: subprocess.Popen[bytes], log: Path, path: str = "/healthz"
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("daemon exited:\n" + log.read_text()[-3000:])
        try:
            with urllib.request.urlopen(url + path, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError("daemon not ready:\n" + log.read_text()[-3000:])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="package")
def region(
    sample: SampleStream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegionProcess]:
    served = ThreadedUpstream(sample.root)
    work = tmp_path_factory.mktemp("region")
    with short_dir("bsb") as data:
        config = work / "regiond.toml"
        config.write_text(
            f'[import]\ndefault_source_url = "{served.upstream.url("/")}"\n'
            f'default_keyring = "{sample.keyring}"\n[log]\nformat = "json"\n'
        )
        port = free_port()
        log = work / "regiond.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "region",
                    "--config",
                    str(config),
                    "--listen",
                    f"127.0.0.1:{port}",
                    "--data-dir",
                    str(data),
                ],
                stdout=out,
                stderr=out,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                cwd=REPO,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(url, proc, log)
            _cli(
                "createadmin",
                "--username",
                ADMIN[0],
                "--password",
                ADMIN[1],
                "--email",
                "admin@example.invalid",
                "--data-dir",
                str(data),
            )
            asyncio.run_coroutine_threadsafe(_make_users(data / "region.db"), served.loop).result(
                30
            )
            yield RegionProcess(
                url=url, data_dir=data, log=log, upstream=served.upstream, stream=sample
            )
        finally:
            _stop(proc)
            served.close()


@pytest.fixture(scope="package")
def rack(region: RegionProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``bootsync-rackd`` registered with ``region`` as ``rack-browser``; its URL."""
    work = tmp_path_factory.mktemp("rack")
    secret = work / "rack-secret"
    secret.write_text(_cli("rack-secret", "--data-dir", str(region.data_dir)).strip() + "\n")
    config = work / "rackd.toml"
    config.write_text(f'[server]\nhostname = "{RACK_HOSTNAME}"\n[log]\nformat = "json"\n')
    log = work / "rackd.log"
    port = free_port()
    with short_dir("bsr") as data, log.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rack",
                "--config",
                str(config),
                "--region",
                region.url,
                "--secret-file",
                str(secret),
                "--listen",
                f"127.0.0.1:{port}",
                "--data-dir",
                str(data),
            ],
            stdout=out,
            stderr=out,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            cwd=REPO,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(url, proc, log, path="/livez")
            yield url
        finally:
            _stop(proc)


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser-tools` (apt-get install chromium)")
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def login(page: Page, region: RegionProcess, who: tuple[str, str]) -> None:
    """Log ``who`` in through the form and land on the images page."""
    page.goto(region.url + "/MAAS/")
    page.get_by_label("Username").fill(who[0])
    page.get_by_label("Password").fill(who[1])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/MAAS/r/images*")


@pytest.fixture
def admin_page(browser: Browser, region: RegionProcess) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20_000)
    login(page, region, ADMIN)
    yield page
    context.close()


@pytest.fixture
def viewer_page(browser: Browser, region: RegionProcess) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20_000)
    login(page, region, VIEWER)
    yield page
    context.close()
