"""The ``bootsync`` CLI in the maas CLI grammar, run as real processes against a real region.

Seed commands: every CLI command of MAAS's "how to import images" page, with
``maas`` replaced by ``bootsync``, run verbatim (the shell's quoting and
``$VARIABLES`` applied, as a shell would). The page:

  https://maas.cloud.cbh.kth.se/MAAS/docs/cli/how-to-use-standard-images.html
  (the CLI twin of .../docs/ui/how-to-import-images.html; the same text is
  CanonicalLtd/maas-docs en/manage-cli-images.md, "CLI Image Management", and the
  3.x page https://canonical.com/maas/docs/3.7/how-to-guides/manage-images/)

Its literal examples select trusty and xenial; the sample stream (like
images.maas.io today) has neither, so those run verbatim and must fail as MAAS
fails: HTTP 400 "OS ubuntu with release trusty has no available images for
download". The other commands the lead listed (is-importing, stop-import,
set-config, rack-controllers import-boot-images) are the MAAS CLI forms of the
rest of MAAS's image-import API; the keyring_data@= update is from the 1.9 page
https://old-docs.maas.io/1.9/en/manage-cli-images.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shlex
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

import aiohttp
import pytest

from common.cli.maascli_commands import handler_command_name
from common.mirror.samplestream import SampleStream
from tests.fakes.daemons import REPO, DaemonProcess
from tests.fakes.upstream import FakeUpstream

pytestmark = pytest.mark.slow

SEED_PAGE = "https://maas.cloud.cbh.kth.se/MAAS/docs/cli/how-to-use-standard-images.html"
SEED_COMMANDS = (
    # how-to-use-standard-images / manage-cli-images.md, in page order
    "bootsync $PROFILE boot-sources read",
    'bootsync $PROFILE boot-source-selections create $SOURCE_ID os="ubuntu" '
    'release="$SERIES" arches="$ARCH" subarches="$KERNEL" labels="*"',
    'bootsync $PROFILE boot-source-selections create 1 os="ubuntu" release="trusty" '
    'arches="amd64" subarches="*" labels="*"',
    'bootsync $PROFILE boot-source-selections create 1 os="ubuntu" release="trusty" '
    'arches="amd64" subarches="hwe-x" labels="*"',
    'bootsync $PROFILE boot-source-selections create 1 os="ubuntu" release="xenial" '
    'arches="amd64" subarches="hwe-16.04" labels="*"',
    "bootsync $PROFILE boot-source-selections read $SOURCE_ID",
    "bootsync $PROFILE boot-resources import",
    "bootsync $PROFILE boot-resources read",
    "bootsync $PROFILE boot-source delete $SOURCE_ID",
    "bootsync $PROFILE boot-source update $SOURCE_ID url=$URL keyring_filename=$KEYRING_FILE",
    "bootsync $PROFILE boot-sources create url=$URL keyring_filename=$KEYRING_FILE",
    # the rest of the import workflow's MAAS API, in its MAAS CLI forms
    "bootsync $PROFILE boot-resources is-importing",
    "bootsync $PROFILE boot-resources stop-import",
    "bootsync $PROFILE maas set-config name=boot_images_auto_import value=false",
    "bootsync $PROFILE rack-controllers import-boot-images",
    # old-docs.maas.io/1.9/en/manage-cli-images: a source with an uploaded keyring
    'bootsync $PROFILE boot-source update 1 url="http://custom.url" keyring_filename="" '
    "keyring_data@=./custom.gpg",
)
NO_TRUSTY = (
    "HTTP 400 Bad Request: os: OS ubuntu with release {} has no available images for download\n"
)
FILE_SIZE = 64 << 10


@dataclass(frozen=True)
class Result:
    """What one CLI process did."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Cli:
    """Runs ``python -m common.cli`` with its own config home, as a user would."""

    home: Path
    variables: dict[str, str] = field(default_factory=dict)
    seeds_run: set[str] = field(default_factory=set)

    async def __call__(self, *words: str, stdin: bytes | None = None) -> Result:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "common.cli",
            *words,
            cwd=self.home,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO), "XDG_CONFIG_HOME": str(self.home)},
        )
        out, err = await asyncio.wait_for(proc.communicate(stdin), 120)
        assert proc.returncode is not None
        return Result(proc.returncode, out.decode(), err.decode())

    async def seed(self, command: str, **variables: str) -> Result:
        """Run one seed command verbatim, with the shell's quoting and variables."""
        assert command in SEED_COMMANDS, command
        self.seeds_run.add(command)
        line = Template(command).substitute({**self.variables, **variables})
        program, *words = shlex.split(line)
        assert program == "bootsync"
        return await self(*words)


@pytest.fixture
async def cli(region: DaemonProcess, data_dir: Path, tmp_path: Path) -> Cli:
    """A CLI whose config home is fresh, and an admin key for the region."""
    home = tmp_path / "home"
    home.mkdir()
    runner = Cli(home)
    key = await runner("apikey", "--username", "admin", "--admin", "--data-dir", str(data_dir))
    assert key.code == 0, key.err
    runner.variables = {
        "PROFILE": "admin",
        "KEY": key.out.strip(),
        "MAAS_URL": f"{region.url}/MAAS/",
    }
    return runner


@pytest.fixture
async def imported(cli: Cli, region: DaemonProcess) -> Cli:
    """The CLI once the region's start-up import (of noble) has finished."""
    await region.wait_for_event("import_finished", timeout=90)
    return cli


async def test_every_seed_command_runs_verbatim_against_a_real_region(
    imported: Cli, fake_upstream: FakeUpstream, stream: SampleStream
) -> None:
    """The page's commands, in a sensible order, each with the answer MAAS would give."""
    cli = imported
    login = await cli("login", "admin", cli.variables["MAAS_URL"], cli.variables["KEY"])
    assert login.code == 0, login.err
    assert "You are now logged in" in login.out

    sources = await cli.seed("bootsync $PROFILE boot-sources read")
    assert (sources.code, sources.err) == (0, "")
    [default] = sources.json()
    assert default["url"] == fake_upstream.url("/")
    cli.variables["SOURCE_ID"] = str(default["id"])

    selected = await cli.seed(SEED_COMMANDS[1], SERIES="jammy", ARCH="amd64", KERNEL="*")
    assert selected.code == 0, selected.err
    assert {k: selected.json()[k] for k in ("os", "release", "arches", "subarches", "labels")} == {
        "os": "ubuntu",
        "release": "jammy",
        "arches": ["amd64"],
        "subarches": ["*"],
        "labels": ["*"],
    }
    for command, release in (
        (SEED_COMMANDS[2], "trusty"),
        (SEED_COMMANDS[3], "trusty"),
        (SEED_COMMANDS[4], "xenial"),
    ):
        refused = await cli.seed(command)
        assert (refused.code, refused.out, refused.err) == (2, "", NO_TRUSTY.format(release))
    listed = await cli.seed("bootsync $PROFILE boot-source-selections read $SOURCE_ID")
    assert sorted(s["release"] for s in listed.json()) == ["jammy", "noble"]

    config = await cli.seed(
        "bootsync $PROFILE maas set-config name=boot_images_auto_import value=false"
    )
    assert (config.code, config.out) == (0, "OK\n")
    started = await cli.seed("bootsync $PROFILE boot-resources import")
    assert (started.code, started.out) == (0, "Import of boot resources started\n")
    importing = await cli.seed("bootsync $PROFILE boot-resources is-importing")
    assert importing.code == 0
    assert importing.out in ("true\n", "false\n")
    stopped = await cli.seed("bootsync $PROFILE boot-resources stop-import")
    assert (stopped.code, stopped.out) == (0, "Import of boot resources is being stopped\n")
    assert (await cli.seed("bootsync $PROFILE boot-resources is-importing")).out == "false\n"

    watched = await cli("admin", "boot-resources", "import", "--watch")
    assert watched.code == 0, watched.out + watched.err
    assert "ubuntu/jammy amd64/" in watched.out
    assert watched.out.splitlines()[-1].startswith("import finished: ")
    resources = await cli.seed("bootsync $PROFILE boot-resources read")
    assert {(r["name"], r["architecture"].split("/")[0]) for r in resources.json()} >= {
        ("ubuntu/jammy", "amd64"),
        ("ubuntu/noble", "amd64"),
    }
    racks = await cli.seed("bootsync $PROFILE rack-controllers import-boot-images")
    assert (racks.code, racks.out) == (0, "Import of boot images started on all rack controllers\n")

    mirror = fake_upstream.url("/").replace("127.0.0.1", "localhost")
    created = await cli.seed(
        "bootsync $PROFILE boot-sources create url=$URL keyring_filename=$KEYRING_FILE",
        URL=mirror,
        KEYRING_FILE=str(stream.keyring),
    )
    assert created.code == 0, created.err
    new_id = str(created.json()["id"])
    moved = await cli.seed(
        SEED_COMMANDS[9], SOURCE_ID=new_id, URL=mirror + "moved/", KEYRING_FILE=str(stream.keyring)
    )
    assert (moved.code, moved.json()["url"]) == (0, mirror + "moved/")
    (cli.home / "custom.gpg").write_bytes(stream.keyring.read_bytes())
    custom = await cli.seed(SEED_COMMANDS[15])
    assert custom.code == 0, custom.err
    assert custom.json()["keyring_filename"] == ""
    assert custom.json()["keyring_data"]
    deleted = await cli.seed("bootsync $PROFILE boot-source delete $SOURCE_ID", SOURCE_ID=new_id)
    assert (deleted.code, deleted.out, deleted.err) == (0, "", "")
    remaining = await cli.seed("bootsync $PROFILE boot-sources read")
    assert [s["url"] for s in remaining.json()] == ["http://custom.url"]
    assert cli.seeds_run == set(SEED_COMMANDS)


async def test_describe_names_give_the_maas_command_whose_config_actions_work(
    cli: Cli, region: DaemonProcess
) -> None:
    """describe/'s handler names become maascli's command names, ``maas`` among them, and
    ``maas get-config``/``set-config`` work through the bootsync CLI."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{region.url}/MAAS/api/2.0/describe/") as resp,
    ):
        doc = await resp.json()
    names = {handler_command_name(r["name"]) for r in doc["resources"]}
    assert {"maas", "boot-sources", "boot-source-selections", "version"} <= names
    assert (await cli("login", "admin", cli.variables["MAAS_URL"], cli.variables["KEY"])).code == 0
    before = await cli("admin", "maas", "get-config", "name=boot_images_auto_import")
    assert (before.code, before.err) == (0, "")
    changed = await cli(
        "admin", "maas", "set-config", "name=boot_images_auto_import", "value=false"
    )
    assert (changed.code, changed.out) == (0, "OK\n")
    after = await cli("admin", "maas", "get-config", "name=boot_images_auto_import")
    assert (after.code, after.json()) == (0, False)


async def test_login_rejects_a_bad_key_and_stores_a_good_one_privately(cli: Cli) -> None:
    """A wrong secret is a 401 and "login failed"; the stored profile file is 0600."""
    url, key = cli.variables["MAAS_URL"], cli.variables["KEY"]
    bad = await cli("login", "admin", url, key[:-1] + ("x" if key[-1] != "x" else "y"))
    assert bad.code == 1
    assert "login failed" in bad.err
    assert "401" in bad.err
    assert not (cli.home / "bootsync" / "profiles.json").exists()
    good = await cli("login", "admin", url, "-", stdin=key.encode() + b"\n")
    assert good.code == 0, good.err
    profiles = cli.home / "bootsync" / "profiles.json"
    assert stat.S_IMODE(profiles.stat().st_mode) == 0o600
    assert stat.S_IMODE(profiles.parent.stat().st_mode) == 0o700
    listed = await cli("list")
    assert listed.out == f"admin {url}api/2.0/ {key}\n"
    assert (await cli("refresh")).code == 0
    assert (await cli("logout", "admin")).code == 0
    assert (await cli("list")).out == ""


async def test_usage_and_api_errors_say_what_exists_and_exit_non_zero(cli: Cli) -> None:
    """Unknown words list the choices (exit 2); API errors print status and message."""
    assert (await cli("login", "admin", cli.variables["MAAS_URL"], cli.variables["KEY"])).code == 0
    unknown = await cli("admin", "boot-sorces", "read")
    assert unknown.code == 2
    assert "unknown command 'boot-sorces'" in unknown.err
    assert "boot-sources" in unknown.err
    action = await cli("admin", "boot-resources", "frob")
    assert action.code == 2
    assert "is-importing" in action.err
    assert "stop-import" in action.err
    missing = await cli("admin", "boot-source-selection", "read", "1")
    assert missing.code == 2
    assert "required: ID" in missing.err
    nobody = await cli("nobody", "boot-sources", "read")
    assert nobody.code == 2
    assert "neither a command nor a profile" in nobody.err
    not_found = await cli("admin", "boot-source", "read", "999")
    assert (not_found.code, not_found.out) == (2, "")
    assert not_found.err == "HTTP 404 Not Found: No BootSource matches the given query.\n"
    reserved = await cli("login", "mirror", cli.variables["MAAS_URL"], cli.variables["KEY"])
    assert reserved.code == 2
    helped = await cli("admin", "boot-sources", "create", "--help")
    assert helped.code == 0
    assert "url=" in helped.out
    assert "keyring_filename=" in helped.out


async def test_boot_resources_create_uploads_a_custom_image_in_chunks(imported: Cli) -> None:
    """content@=FILE goes up as sha256+size then 4 MiB PUTs; the same bytes again skip it."""
    cli = imported
    assert (await cli("login", "admin", cli.variables["MAAS_URL"], cli.variables["KEY"])).code == 0
    data = bytes(range(251)) * ((9 << 20) // 251) + b"end"
    (cli.home / "mine.tgz").write_bytes(data)
    words = (
        "admin",
        "boot-resources",
        "create",
        "name=mine",
        "architecture=amd64/generic",
        "title=Mine",
        "content@=mine.tgz",
    )
    first = await cli(*words)
    assert first.code == 0, first.err
    resource = first.json()
    [newest] = [s for v, s in resource["sets"].items() if v == max(resource["sets"])]
    [file] = newest["files"].values()
    assert (file["sha256"], file["size"], file["complete"]) == (
        hashlib.sha256(data).hexdigest(),
        len(data),
        True,
    )
    assert (resource["name"], resource["type"]) == ("mine", "Uploaded")
    second = await cli(*words)
    assert second.code == 0, second.err
    assert "already holds these bytes" in second.err


async def test_boot_sources_fetch_prints_what_a_mirror_offers(
    cli: Cli, fake_upstream: FakeUpstream, stream: SampleStream
) -> None:
    """``boot-sources fetch url=... keyring_filename=...`` prints the offer; a dead URL is a 400 on url."""
    assert (await cli("login", "admin", cli.variables["MAAS_URL"], cli.variables["KEY"])).code == 0
    keyring = f"keyring_filename={stream.keyring}"
    fetched = await cli("admin", "boot-sources", "fetch", f"url={fake_upstream.url('/')}", keyring)
    assert (fetched.code, fetched.err) == (0, ""), fetched.err
    offer = fetched.json()
    assert offer["url"] == fake_upstream.url("/")
    assert {("noble", "amd64"), ("jammy", "amd64")} <= {
        (i["release"], i["arch"]) for i in offer["images"]
    }
    refused = await cli("admin", "boot-sources", "fetch", "url=http://127.0.0.1:9/", keyring)
    assert (refused.code, refused.out) == (2, "")
    assert refused.err.startswith("HTTP 400 Bad Request: url: Could not read the source: ")
    helped = await cli("admin", "boot-sources", "fetch", "--help")
    assert helped.code == 0
    assert "keyring_data=" in helped.out
