#!/usr/bin/env bash
# Fetch the real kernel and the static busybox the VM boot test (tests/vm/) boots,
# from Debian's archive through apt (`apt-get download`: no root needed), into DIR:
#   DIR/vmlinuz    /boot/vmlinuz-* of linux-image-amd64's kernel package
#   DIR/busybox    /bin/busybox of busybox-static (the test builds its initrd around it)
#   DIR/VERSIONS   the package versions fetched
# Usage: scripts/fetch-vm-boot-files.sh DIR
set -euo pipefail
dir=${1:?usage: $0 DIR}
mkdir -p "$dir"
work=$(mktemp -d /tmp/bootsync-vm-fetch.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"  # apt-get download drops to the _apt user when root
kernel=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1)
[ -n "$kernel" ] || { echo "fetch-vm-boot-files: no kernel package behind linux-image-amd64 (run apt-get update)" >&2; exit 1; }
cd "$work"
apt-get download -q "$kernel" busybox-static >/dev/null
dpkg-deb -x "$(ls "$kernel"_*.deb)" kernel
dpkg-deb -x "$(ls busybox-static_*.deb)" busybox
cp kernel/boot/vmlinuz-* "$dir/vmlinuz.new" && mv "$dir/vmlinuz.new" "$dir/vmlinuz"
cp busybox/bin/busybox "$dir/busybox.new" && mv "$dir/busybox.new" "$dir/busybox"
ls ./*.deb | sed 's|^\./||' > "$dir/VERSIONS"
echo "fetch-vm-boot-files: $(tr '\n' ' ' < "$dir/VERSIONS")-> $dir"
