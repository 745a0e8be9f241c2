# bootsync developer entry points. Everything runs from a clean clone on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SSTREAM_VENV ?= .venv-simplestreams
LIBMAAS_VENV ?= .venv-libmaas

.PHONY: setup lock systemd-tools tftp-clients browser-tools postgresql-tools vm-tools vm-boot-files vm-test demo demo-mirror test screenshots lint typecheck pytest bench clean

# Dependencies come pinned from requirements.lock; bootsync itself is installed
# without resolving anything again.
$(BIN)/bootsync: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e '.[test]'
	touch $@

# After changing a dependency in pyproject.toml: resolve it into the venv and
# pin everything installed (tests/unit/test_lock_file.py checks the two agree).
lock: $(BIN)/bootsync
	$(BIN)/pip install --quiet -e '.[test]'
	{ sed -n '/^#/p' requirements.lock; \
	  $(BIN)/pip freeze --exclude-editable | grep -iv '^bootsync[=@ ]' \
	    | sed 's/^uvloop==.*/& ; sys_platform != "win32"/'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

# Canonical's python-simplestreams shares our `simplestreams` import name, so it
# lives in its own venv and is only ever run as a peer program (sstream-mirror).
$(SSTREAM_VENV)/bin/sstream-mirror:
	$(PYTHON) -m venv $(SSTREAM_VENV)
	$(SSTREAM_VENV)/bin/pip install --quiet python-simplestreams
	touch $@

# python-libmaas (a real MAAS client the tests drive the region with) pulls in its own
# aiohttp, pymongo, macaroonbakery, ... and a `maas` script: it gets a venv of its own
# and runs as a subprocess (tests/integration/test_libmaas.py). setuptools provides
# the distutils it imports on Python >= 3.12.
$(LIBMAAS_VENV)/.installed:
	$(PYTHON) -m venv $(LIBMAAS_VENV)
	$(LIBMAAS_VENV)/bin/pip install --quiet 'python-libmaas==0.6.8' setuptools
	touch $@

# systemd-analyze, systemd-sysusers and systemd-tmpfiles check systemd/ in the
# tests. Debian's package systemd has them; installed here when missing and
# root (CI is). Otherwise the tests fail and say how to get them.
systemd-tools:
	@command -v systemd-analyze >/dev/null || { [ "$$(id -u)" = 0 ] \
	    && apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	       apt-get install -y -qq --no-install-recommends systemd >/dev/null; } \
	    || echo "make: systemd-analyze is missing; install the systemd package" >&2

# The rack's TFTP tests (tests/integration/rack/test_tftp*.py) fetch with real
# clients: curl (tftp://), tftp-hpa's tftp and atftp; bench/tftp_bench.py also runs
# tftpd-hpa's in.tftpd itself (foreground, on a high port of 127.0.0.1; the package's
# own port-69 service, where its install starts one, is not used). Installed here when
# missing and root (CI is). Otherwise those tests are skipped and say how to get them.
tftp-clients:
	@{ command -v curl && command -v tftp && command -v atftp \
	    && { command -v in.tftpd || [ -x /usr/sbin/in.tftpd ]; }; } >/dev/null || { [ "$$(id -u)" = 0 ] \
	    && apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	       apt-get install -y -qq --no-install-recommends tftp-hpa atftp curl tftpd-hpa >/dev/null; } \
	    || echo "make: a TFTP program is missing; install the packages tftp-hpa, atftp, curl and tftpd-hpa" >&2

# The browser tests (tests/browser/) drive Debian's Chromium through Playwright for
# Python (from the test extra); Playwright's own browser download is not used.
# Installed here when /usr/bin/chromium is missing and we are root (CI is).
browser-tools:
	@[ -x /usr/bin/chromium ] || { [ "$$(id -u)" = 0 ] \
	    && apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	       apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
	    || echo "make: /usr/bin/chromium is missing; install the chromium package" >&2

# The database tests (tests/integration/region/test_db_engines.py) also run every
# repository against a throwaway PostgreSQL server (initdb + pg_ctl in a temp dir,
# tests/fakes/postgres.py). Debian's package postgresql has them, under
# /usr/lib/postgresql/<version>/bin; installed here when missing and root (CI is).
postgresql-tools:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null \
	    || { [ "$$(id -u)" = 0 ] \
	    && apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	       apt-get install -y -qq --no-install-recommends postgresql >/dev/null; } \
	    || echo "make: initdb is missing; install the postgresql package" >&2

# The VM boot test (tests/vm/) network-boots a QEMU machine from a running rack:
# Debian's qemu-system-x86 with the iPXE ROMs of ipxe-qemu, installed here when
# missing and root (CI is), and a real kernel (linux-image-amd64's), static
# busybox and pxelinux from Debian's archive, fetched with apt-get download (no root needed)
# into $(VM_BOOT_FILES) by scripts/fetch-vm-boot-files.sh. Otherwise the test is
# skipped and says how to get them.
VM_BOOT_FILES ?= .cache/vm
vm-tools:
	@{ command -v qemu-system-x86_64 && ls /usr/lib/ipxe/qemu/efi-virtio.rom; } >/dev/null 2>&1 \
	    || { [ "$$(id -u)" = 0 ] \
	    && apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	       apt-get install -y -qq --no-install-recommends qemu-system-x86 ipxe-qemu >/dev/null; } \
	    || echo "make: qemu-system-x86_64 is missing; install the packages qemu-system-x86 and ipxe-qemu" >&2

$(VM_BOOT_FILES)/VERSIONS: scripts/fetch-vm-boot-files.sh
	@bash scripts/fetch-vm-boot-files.sh $(VM_BOOT_FILES) \
	    || echo "make: cannot fetch the VM boot files (apt-get download linux-image-amd64's kernel, busybox-static, pxelinux, syslinux-common)" >&2

vm-boot-files: $(VM_BOOT_FILES)/VERSIONS

setup: $(BIN)/bootsync $(SSTREAM_VENV)/bin/sstream-mirror $(LIBMAAS_VENV)/.installed systemd-tools tftp-clients browser-tools postgresql-tools vm-tools vm-boot-files

demo: $(BIN)/bootsync
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

demo-mirror: $(BIN)/bootsync
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo-mirror.sh

lint: $(BIN)/bootsync
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/bootsync
	$(BIN)/mypy

# Two workers (pytest-xdist), a test file per worker at a time: most tests wait on
# real daemons and servers, so the suite takes about half the time on 2 cores.
pytest: setup
	SSTREAM_BIN="$(CURDIR)/$(SSTREAM_VENV)/bin" LIBMAAS_PYTHON="$(CURDIR)/$(LIBMAAS_VENV)/bin/python" \
	    BOOTSYNC_REQUIRE_VM=1 $(BIN)/pytest -q -n 2 --dist loadfile

test: lint typecheck pytest

# Refresh the README's pictures of the Images page (docs/images-page-*.png).
screenshots: setup
	BOOTSYNC_SCREENSHOTS_DIR="$(CURDIR)/docs" $(BIN)/pytest -q tests/browser/test_images_page.py

# The VM boot test alone (README, "How machines boot"; `make test` runs it too).
vm-test: setup
	SSTREAM_BIN="$(CURDIR)/$(SSTREAM_VENV)/bin" BOOTSYNC_VM_BOOT_FILES="$(CURDIR)/$(VM_BOOT_FILES)" \
	    $(BIN)/pytest -q -m vm tests/vm

bench: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" SSTREAM_BIN="$(CURDIR)/$(SSTREAM_VENV)/bin" \
	    $(BIN)/python bench/mirror_bench.py

.PHONY: bench-region bench-rack bench-startup bench-conditional bench-tftp
bench-region: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" SSTREAM_BIN="$(CURDIR)/$(SSTREAM_VENV)/bin" \
	    $(BIN)/python bench/region_bench.py

bench-rack: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" SSTREAM_BIN="$(CURDIR)/$(SSTREAM_VENV)/bin" \
	    $(BIN)/python bench/rack_bench.py

# `bootsync --help` against `sstream-mirror --help`, interleaved (bench/RESULTS.md, "Start-up").
bench-startup: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" SSTREAM_BIN="$(CURDIR)/$(SSTREAM_VENV)/bin" \
	    $(BIN)/python bench/startup_bench.py

# The rack's TFTP server against tftpd-hpa, same client (atftp): bench/RESULTS.md, "TFTP".
bench-tftp: $(BIN)/bootsync tftp-clients
	$(BIN)/python bench/tftp_bench.py

# Bytes and time of a no-change metadata read (304s) against a full one.
bench-conditional: $(BIN)/bootsync
	$(BIN)/python bench/conditional_bench.py

# GET boot-resources/ with 1,000 resources on SQLite and on PostgreSQL, interleaved.
.PHONY: bench-db
bench-db: $(BIN)/bootsync postgresql-tools
	$(BIN)/python bench/db_bench.py

# Racks pulling from one region vs two, and a second region's peer sync of a 1 GiB import.
.PHONY: bench-cluster
bench-cluster: $(BIN)/bootsync postgresql-tools
	$(BIN)/python bench/cluster_bench.py

# bootsync mirror against sstream-mirror behind nginx limit_rate (and a delaying proxy):
# bench/RESULTS.md, "WAN-shaped upstream".
.PHONY: bench-wan
bench-wan: setup
	SSTREAM_BIN="$(CURDIR)/$(SSTREAM_VENV)/bin" $(BIN)/python bench/wan_bench.py

# The mirror's ratios to sstream-mirror (small and large streams) and curl, interleaved.
.PHONY: bench-ratio
bench-ratio: setup
	SSTREAM_BIN="$(CURDIR)/$(SSTREAM_VENV)/bin" $(BIN)/python bench/mirror_ratio_bench.py

# Peak RSS of bootsync mirror, the region import and the rack pull: 8 MiB files against
# one 1 GiB file (bench/RESULTS.md, "Memory (bench/rss_bench.py)").
.PHONY: bench-rss
bench-rss: $(BIN)/bootsync $(SSTREAM_VENV)/bin/sstream-mirror
	SSTREAM_BIN="$(CURDIR)/$(SSTREAM_VENV)/bin" $(BIN)/python bench/rss_bench.py

clean:
	rm -rf $(VENV) $(SSTREAM_VENV) $(LIBMAAS_VENV) demo-data bench/work
