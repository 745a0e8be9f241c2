"""Bootloader archives unpacked under bootloader/<type>/<arch>/ and boot files linked at the root."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Literal

import pytest

from rack import bootloaders
from rack.bootloaders import install_into


def archive(
    path: Path,
    members: dict[str, bytes],
    mode: Literal["w:xz", "w:gz", "w"] = "w:xz",
    links: dict[str, str] | None = None,
) -> str:
    """Write a tar archive of regular ``members`` (and symlinks ``links``) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path.name


def test_archives_unpack_beside_themselves_and_boot_files_link_at_the_root(
    tmp_path: Path,
) -> None:
    """tar.xz, tar.gz and tar archives unpack; MAAS's names link to them; the arm64 and ppc64el
    grub2.tar.xz (same name, other arches) both unpack without touching each other."""
    syslinux = {n: n.encode() for n in bootloaders.BOOT_METHODS[0].files}
    archive(
        tmp_path / "bootloader/pxe/i386/syslinux.tar.xz", {"./" + k: v for k, v in syslinux.items()}
    )
    archive(tmp_path / "bootloader/uefi/amd64/shim-signed.tar.gz", {"bootx64.efi": b"shim"}, "w:gz")
    archive(tmp_path / "bootloader/uefi/amd64/grub2-signed.tar", {"grubx64.efi": b"grub"}, "w")
    archive(
        tmp_path / "bootloader/uefi/arm64/grub2.tar.xz",
        {"bootaa64.efi": b"a-shim", "grubaa64.efi": b"a-grub", "grub/grub.cfg": b"arm"},
    )
    archive(
        tmp_path / "bootloader/open-firmware/ppc64el/grub2.tar.xz",
        {"bootppc64.bin": b"ppc", "grub/grub.cfg": b"ppc"},
    )
    relpaths = [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.tar*")]
    report = install_into(tmp_path, relpaths, set(relpaths))
    assert report.refused == []
    assert report.clashes == []
    assert report.link_failures == []
    assert (tmp_path / "bootx64.efi").read_bytes() == b"shim"
    assert (tmp_path / "bootx64.efi").readlink() == Path("bootloader/uefi/amd64/bootx64.efi")
    assert (tmp_path / "grubx64.efi").read_bytes() == b"grub"
    assert (tmp_path / "bootaa64.efi").read_bytes() == b"a-shim"
    assert (tmp_path / "bootppc64.bin").read_bytes() == b"ppc"
    for name, data in syslinux.items():
        assert (tmp_path / name).read_bytes() == data
    assert (tmp_path / "bootloader/uefi/arm64/grub/grub.cfg").read_bytes() == b"arm"
    assert (tmp_path / "bootloader/open-firmware/ppc64el/grub/grub.cfg").read_bytes() == b"ppc"
    assert "bootloader/uefi/amd64/bootx64.efi" in report.files
    assert set(report.link_hashes) == set(report.links)


@pytest.mark.parametrize(
    ("members", "links", "reason"),
    [
        ({"/etc/evil": b"x"}, {}, "not a path inside the archive"),
        ({"../evil": b"x"}, {}, "not a path inside the archive"),
        ({"a/../../evil": b"x"}, {}, "not a path inside the archive"),
        ({"ok": b"x"}, {"link": "../../../etc/passwd"}, "a link that leaves the tree"),
        ({"ok": b"x"}, {"link": "/etc/passwd"}, "a link that leaves the tree"),
    ],
)
def test_unsafe_archives_stay_packed_and_are_reported(
    tmp_path: Path, members: dict[str, bytes], links: dict[str, str], reason: str
) -> None:
    """Absolute paths, '..' and links out of the tree refuse the whole archive: nothing of it
    is unpacked."""
    name = archive(tmp_path / "bootloader/uefi/amd64/shim-signed.tar.xz", members, links=links)
    relpath = f"bootloader/uefi/amd64/{name}"
    report = install_into(tmp_path, [relpath], {relpath})
    assert [archive for archive, _ in report.refused] == [relpath]
    assert reason in report.refused[0][1]
    assert sorted(p.name for p in (tmp_path / "bootloader/uefi/amd64").iterdir()) == [name]
    assert not (tmp_path / "evil").exists()


def test_archive_bombs_are_refused_by_member_count_and_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More members or more unpacked bytes than the limits refuse the archive."""
    monkeypatch.setattr(bootloaders, "MAX_MEMBERS", 3)
    monkeypatch.setattr(bootloaders, "MAX_BYTES", 1000)
    many = archive(tmp_path / "bootloader/pxe/i386/many.tar.xz", {f"f{n}": b"x" for n in range(4)})
    big = archive(tmp_path / "bootloader/pxe/amd64/big.tar.xz", {"zeros": bytes(1001)})
    relpaths = [f"bootloader/pxe/i386/{many}", f"bootloader/pxe/amd64/{big}"]
    report = install_into(tmp_path, relpaths, set(relpaths))
    reasons = dict(report.refused)
    assert "more than 3 members" in reasons[relpaths[0]]
    assert "more than 1000 bytes" in reasons[relpaths[1]]
    assert report.files == {}


def test_links_inside_the_tree_and_special_files_are_skipped(tmp_path: Path) -> None:
    """Only regular files and directories are unpacked; a link inside the tree is skipped."""
    name = archive(
        tmp_path / "bootloader/uefi/amd64/shim-signed.tar.xz",
        {"bootx64.efi": b"shim"},
        links={"alias": "bootx64.efi"},
    )
    relpath = f"bootloader/uefi/amd64/{name}"
    report = install_into(tmp_path, [relpath], {relpath})
    assert report.unpacked == [(relpath, 1, 1)]
    assert not (tmp_path / "bootloader/uefi/amd64/alias").exists()


def test_a_clash_keeps_the_first_file_and_a_missing_boot_file_is_reported(
    tmp_path: Path,
) -> None:
    """Two archives of one directory with different bytes under one name: the first stays and
    the clash is reported; a boot method's file no archive holds is a link failure."""
    first = archive(tmp_path / "bootloader/uefi/amd64/a.tar.xz", {"bootx64.efi": b"one"})
    second = archive(tmp_path / "bootloader/uefi/amd64/b.tar.xz", {"bootx64.efi": b"two"})
    relpaths = [f"bootloader/uefi/amd64/{first}", f"bootloader/uefi/amd64/{second}"]
    report = install_into(tmp_path, relpaths, set(relpaths))
    assert report.clashes == [("bootloader/uefi/amd64/bootx64.efi", relpaths[1])]
    assert (tmp_path / "bootx64.efi").read_bytes() == b"one"
    assert [(n, m) for n, m, _ in report.link_failures] == [("grubx64.efi", "uefi_amd64_tftp")]


def test_a_root_name_already_taken_is_a_link_failure_not_an_overwrite(tmp_path: Path) -> None:
    """A boot file whose root name the snapshot already uses is reported and not linked."""
    name = archive(
        tmp_path / "bootloader/open-firmware/ppc64el/grub2.tar.xz", {"bootppc64.bin": b"p"}
    )
    relpath = f"bootloader/open-firmware/ppc64el/{name}"
    (tmp_path / "bootppc64.bin").write_bytes(b"other")
    report = install_into(tmp_path, [relpath], {relpath, "bootppc64.bin"})
    assert report.link_failures[0][0] == "bootppc64.bin"
    assert "already taken" in report.link_failures[0][2]
    assert (tmp_path / "bootppc64.bin").read_bytes() == b"other"
