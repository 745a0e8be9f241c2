#!/usr/bin/env bash
# Fetch the real kernel and the static busybox the VM boot test (tests/vm/) boots,
# from Debian's archive through apt (`apt-get download`: no root needed), into DIR:
#   DIR/vmlinuz    /boot/vmlinuz-* of linux-image-amd64's kernel package
#   DIR/busybox    /bin/busybox of busybox-static (the test builds its initrd around it)
#   DIR/syslinux/  lpxelinux.0 (pxelinux) and the BIOS .c32 modules MAAS links beside it
#                  (syslinux-common): the test's PXE bootloader
#   DIR/VERSIONS   the package versions fetched
# Usage: scripts/fetch-vm-boot-files.sh DIR
set -euo pipefail
dir=${1:?usage: $0 DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)  # absolute: the script works in a temp dir below
work=$(mktemp -d /tmp/bootsync-vm-fetch.XXXXXX)
trap 'rm -rf "$work"' EXIT
kernel=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1)
[ -n "$kernel" ] || { echo "fetch-vm-boot-files: no kernel package behind linux-image-amd64 (run apt-get update)" >&2; exit 1; }
cd "$work"
sandbox=()
[ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)  # root: no _apt user to drop to
apt-get download -q "${sandbox[@]}" "$kernel" busybox-static pxelinux syslinux-common >/dev/null
dpkg-deb -x "$(ls "$kernel"_*.deb)" kernel
dpkg-deb -x "$(ls busybox-static_*.deb)" busybox
dpkg-deb -x "$(ls pxelinux_*.deb)" syslinux
dpkg-deb -x "$(ls syslinux-common_*.deb)" syslinux
mkdir -p "$dir/syslinux"
cp syslinux/usr/lib/PXELINUX/lpxelinux.0 "$dir/syslinux/"
for module in ldlinux libcom32 libutil chain ifcpu ifcpu64; do
    cp "syslinux/usr/lib/syslinux/modules/bios/$module.c32" "$dir/syslinux/"
done
cp kernel/boot/vmlinuz-* "$dir/vmlinuz.new" && mv "$dir/vmlinuz.new" "$dir/vmlinuz"
cp busybox/bin/busybox "$dir/busybox.new" && mv "$dir/busybox.new" "$dir/busybox"
ls ./*.deb | sed 's|^\./||' > "$dir/VERSIONS"
echo "fetch-vm-boot-files: $(tr '\n' ' ' < "$dir/VERSIONS")-> $dir"
