"""The systemd units, sysusers.d and tmpfiles.d entries pass systemd's own tools.

``systemd-analyze`` comes with the ``systemd`` package; ``make setup`` installs
it when it is missing and the user is root. Without it these tests fail (they
do not skip): shipping units nobody checked is what they prevent.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from rack.config import RackConfig
from region.config import RegionConfig

REPO = Path(__file__).resolve().parents[2]
SYSTEMD = REPO / "systemd"
UNITS = {
    "bootsync-regiond": RegionConfig().data_dir,
    "bootsync-rackd": RackConfig(secret="x").data_dir,
}
MAX_EXPOSURE = 25  # systemd-analyze security's scale ×10: "2.5" at most (now 1.8)


def tool(name: str) -> str:
    """The path of systemd tool ``name``; fails the test with the fix when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} not found: run `make setup` as root (it installs the Debian "
            f"package systemd) or `apt-get install systemd`"
        )
    return path


def directives(unit: Path) -> dict[str, list[str]]:
    """``Key`` → every value it is given in ``unit`` (comments and sections dropped)."""
    found: dict[str, list[str]] = defaultdict(list)
    for line in unit.read_text().splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found[key.strip()].append(value.strip())
    return found


def installed_copy(unit: str, into: Path) -> Path:
    """The unit with ExecStart pointing at this venv's console script, as a venv install does."""
    script = Path(sys.executable).parent / unit
    if not script.exists():
        pytest.fail(f"{script} is missing: install the package (`make setup`)")
    copy = into / f"{unit}.service"
    copy.write_text(
        (SYSTEMD / f"{unit}.service")
        .read_text()
        .replace(f"ExecStart=/usr/bin/{unit}", f"ExecStart={script}")
    )
    return copy


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_systemd_analyze_verify_accepts_the_unit(unit: str, tmp_path: Path) -> None:
    """systemd-analyze verify finds nothing to report in the unit."""
    result = subprocess.run(
        [tool("systemd-analyze"), "verify", installed_copy(unit, tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_the_unit_s_exposure_stays_low(unit: str, tmp_path: Path) -> None:
    """systemd-analyze security rates the sandbox at most 2.5 ("OK")."""
    result = subprocess.run(
        [
            tool("systemd-analyze"),
            "security",
            "--offline=true",
            f"--threshold={MAX_EXPOSURE}",
            "--no-pager",
            installed_copy(unit, tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


@pytest.mark.parametrize(("unit", "data_dir"), sorted(UNITS.items()))
def test_the_unit_runs_the_console_script_sandboxed_with_its_data_dir_writable(
    unit: str, data_dir: Path
) -> None:
    """Type=notify with the watchdog, user bootsync, read-only system but the data directory."""
    found = directives(SYSTEMD / f"{unit}.service")
    config = "regiond.toml" if "regiond" in unit else "rackd.toml"
    assert found["ExecStart"] == [f"/usr/bin/{unit} --config /etc/bootsync/{config}"]
    assert found["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    for key, value in {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "30s",
        "Restart": "on-failure",
        "User": "bootsync",
        "Group": "bootsync",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "ReadWritePaths": str(data_dir),
        "StateDirectory": str(data_dir.relative_to("/var/lib")),
    }.items():
        assert found[key] == [value], key


def test_sysusers_and_tmpfiles_make_the_user_and_directories(tmp_path: Path) -> None:
    """Applied to an empty root, they create user bootsync and its directories, 0750."""
    (tmp_path / "etc").mkdir()
    for command in (
        [tool("systemd-sysusers"), f"--root={tmp_path}", str(SYSTEMD / "bootsync.sysusers")],
        [
            tool("systemd-tmpfiles"),
            f"--root={tmp_path}",
            "--create",
            str(SYSTEMD / "bootsync.tmpfiles"),
        ],
    ):
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
    users = {
        line.split(":")[0]: line.split(":")
        for line in (tmp_path / "etc" / "passwd").read_text().splitlines()
    }
    uid, gid = int(users["bootsync"][2]), int(users["bootsync"][3])
    for data_dir in UNITS.values():
        info = (tmp_path / data_dir.relative_to("/")).stat()
        assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (uid, gid, 0o750)
    etc = (tmp_path / "etc" / "bootsync").stat()
    assert (etc.st_uid, etc.st_gid, etc.st_mode & 0o777) == (0, gid, 0o750)
