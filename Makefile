# kiln — two entry points for a newcomer on Debian 12 (see README.md):
#   make demo   build the embedded default lab and rehearse it in QEMU
#   make test   unit tests + the QEMU smoke tier (what CI runs)
# Both install what they need first (apt packages as root, Go modules).

GO        ?= go
OUT       ?= out
KILN      := $(OUT)/bin/kiln
GOFLAGS   ?=
export GOFLAGS

# Real Consul and Vault for the rehearsals, built unpatched from the Go
# module proxy (qemu-tests/upstream: the newest MPL-2.0 releases), and the
# demo's own lab directory (secrets and artifact record), apart from the
# user's ~/.local/state/kiln.
UPSTREAM  ?= $(OUT)/upstream
DEMO_LAB  ?= $(OUT)/demo-lab
# qemu-tests/upstream.ConsulVersion: the unit tests run `consul validate`.
CONSUL_BIN = $(abspath $(UPSTREAM))/consul-1.14.8

# Debian packages kiln's build, its checks and its rehearsal use on the host.
APT_PACKAGES := \
	debian-archive-keyring gpgv gpg gpg-agent ca-certificates \
	qemu-system-x86 qemu-system-arm qemu-utils ovmf ipxe \
	mmdebstrap apt-utils squashfs-tools fdisk gdisk dosfstools mtools \
	syslinux syslinux-common systemd-boot-efi e2fsprogs kmod \
	dnsmasq-base tcpdump iproute2 xz-utils zstd iputils-ping curl \
	chromium chrony ntpsec-ntpdate qemu-user-static binfmt-support

# Installed without their recommends: wireguard-tools recommends a whole
# kernel (wireguard-modules), which a test host does not want.
APT_BARE_PACKAGES := wireguard-tools wireguard-go

.PHONY: all deps apt-deps go-deps build upstream demo test e2e unit bench bench-deps fuzz clean

all: build

deps: apt-deps go-deps

# Install only what is missing, so a second run needs no network.
apt-deps:
	@$(call apt_install,$(APT_PACKAGES),)
	@$(call apt_install,$(APT_BARE_PACKAGES),--no-install-recommends)

apt_install = missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "kiln: installing Debian packages:" $$missing; \
		if [ "$$(id -u)" != 0 ]; then echo "kiln: run as root (or sudo make ...) to install them" >&2; exit 1; fi; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(2) $$missing; \
	fi

go-deps:
	$(GO) mod download

build: go-deps
	CGO_ENABLED=0 $(GO) build -o $(KILN) ./cmd/kiln

# Consul and Vault built here (a few minutes each, once).
upstream: go-deps
	$(GO) run ./qemu-tests/upstream/cmd build -out $(UPSTREAM)

# The lab gets them as a user would: kiln artifacts import, and k3s's
# labelled stand-in through kiln artifacts fetch from a local server.
demo: deps build upstream
	$(GO) run ./qemu-tests/upstream/cmd prepare -kiln $(KILN) -bin $(UPSTREAM) -lab-dir $(DEMO_LAB)
	$(KILN) build --secrets $(DEMO_LAB) -o $(OUT)
	$(KILN) rehearse --bundle $(OUT) --output $(OUT)/rehearse

# The QEMU tests run verbose: their log shows the accelerator chosen
# (KILN_ACCEL=auto|kvm|tcg, auto when unset) and each VM's timings.
test: deps upstream
	$(GO) vet ./...
	KILN_CONSUL_BIN=$(CONSUL_BIN) KILN_KUBECTL=$$(qemu-tests/tools/kubectl.sh) \
		$(GO) test -timeout 25m $$($(GO) list ./... | grep -v /qemu-tests)
	KILN_UPSTREAM=$(abspath $(UPSTREAM)) $(GO) test -v -timeout 60m ./qemu-tests/...

# The end-to-end tier CI does not run (it takes long): the three-node Ceph
# lab (qemu-tests TestCephThreeNodes, testdata/ceph3.yaml): HEALTH_OK, one
# node powered off and back, one node reinstalled keeping its OSDs; then
# the install drill with 20 power cuts (TestInstallPowerCut) and the
# first-boot drill (TestFirstBootPowerCut: a storage node cut inside its
# Ceph, Consul and Vault phases) and the gate's soak (TestGateSoak: 10,200
# netboot requests to the gate VM, then an install).
DRILL_CUTS ?= 20
e2e: deps upstream
	KILN_E2E=1 KILN_DRILL_CUTS=$(DRILL_CUTS) KILN_UPSTREAM=$(abspath $(UPSTREAM)) \
		$(GO) test -v -timeout 300m -run 'TestCephThreeNodes|TestInstallPowerCut|TestFirstBootPowerCut|TestGateSoak' ./qemu-tests/

# Every fuzz test (parsers of network input, the gate's DHCP, TFTP, iPXE
# and API handlers) for FUZZTIME each, one after the other. A crash stops
# here; go test has saved its input under the package's testdata/fuzz,
# where it stays as a regression case once fixed. (The top qemu-tests
# package is skipped: listing its tests runs its TestMain.)
FUZZTIME ?= 30s
fuzz: go-deps
	@for pkg in $$($(GO) list ./... | grep -v '/qemu-tests$$'); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "kiln: fuzz $$f in $$pkg for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

# The peers make bench measures kiln against. A policy-rc.d keeps their
# packages from starting daemons on the host while they install (one the
# machine already has is left as it is, and used).
BENCH_PACKAGES := tftpd-hpa nginx-light curl
bench-deps:
	@if [ -e /usr/sbin/policy-rc.d ] || [ "$$(id -u)" != 0 ]; then \
		$(call apt_install,$(BENCH_PACKAGES),--no-install-recommends); \
	else \
		printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d; \
		( $(call apt_install,$(BENCH_PACKAGES),--no-install-recommends) ); rc=$$?; \
		rm -f /usr/sbin/policy-rc.d; exit $$rc; \
	fi

# The netboot servers side by side (qemu-tests/bench/netboot): kiln's
# TFTP, HTTP, DHCP (full and proxy) and a PXE storm against tftpd-hpa,
# dnsmasq and nginx across a veth pair; then, on a build of the default
# lab (its Consul and Vault as make demo gets them), the gate's
# boot-to-serving time and idle memory beside a Debian arm64 systemd boot
# of the same kernel in the same QEMU VM (qemu-tests/bench), and a BIOS
# VM netbooted to the installer by kiln and by dnsmasq
# (qemu-tests/bench/vmboot); then kiln build again, warm, against a
# hand-rolled mmdebstrap + mksquashfs + mkfs.vfat/mcopy pipeline
# (qemu-tests/bench/imagebuild; the build above was its warm-up).
BENCH_ROUNDS ?= 5
# A warm kiln build and the pipeline take about ten minutes each here.
BUILD_ROUNDS ?= 2
bench: deps bench-deps build upstream
	$(GO) run ./qemu-tests/bench/netboot/cmd -rounds $(BENCH_ROUNDS) -out $(OUT)/bench/netboot
	$(GO) run ./qemu-tests/upstream/cmd prepare -kiln $(KILN) -bin $(UPSTREAM) -lab-dir $(DEMO_LAB)
	$(KILN) build --secrets $(DEMO_LAB) -o $(OUT)
	$(GO) run ./qemu-tests/bench/cmd -gate $(OUT)/gate-1.img -out $(OUT)/bench \
		-bundle $(OUT)/bundle -kiln $(KILN) -rounds $(BENCH_ROUNDS)
	$(GO) run ./qemu-tests/bench/cmd -build-only -warmup=false -kiln $(KILN) -secrets $(DEMO_LAB) -out $(OUT)/bench -rounds $(BUILD_ROUNDS)

clean:
	rm -rf $(OUT)
