#!/bin/sh
# kubectl.sh prints the path of a kubectl that kiln's tests check
# Kubernetes manifests with (roles' TestK3sManifestsKubectl reads it from
# KILN_KUBECTL):
#
#   KILN_KUBECTL=$(qemu-tests/tools/kubectl.sh) go test ./roles/
#
# It is Debian's kubectl 1.36 from sid/forky (package kubectl, source
# kubernetes): bookworm's kubernetes-client is 1.20, too old, and the newer
# .deb runs on bookworm (it needs libc6 >= 2.34; bookworm has 2.36). The
# .deb is fetched once from the pinned URL, checked against the pinned
# sha256, and usr/bin/kubectl extracted (dpkg-deb -x) into kiln's cache:
# $KILN_CACHE, else $XDG_CACHE_HOME/kiln, else ~/.cache/kiln. A second run
# needs no network. It needs curl (or wget), sha256sum and dpkg-deb.
#
# The pool keeps a .deb only while a suite lists it: when sid and forky move
# past this version, the download fails; pin the new one from
#   curl -s http://deb.debian.org/debian/dists/sid/main/binary-amd64/Packages.xz |
#     xz -dc | grep -A30 '^Package: kubectl$' | grep -E '^(Version|Filename|SHA256):'
# (a kubectl already in the cache keeps working meanwhile).
set -eu

VERSION=1.36.4+ds-1
URL=http://deb.debian.org/debian/pool/main/k/kubernetes/kubectl_${VERSION}_amd64.deb
SHA256=407dad9ec755a64ef8c96dd2f5c0c093f9d334193c91cc0ce8424928cd5734d3

case $(uname -m) in
x86_64) ;;
*)
	echo "kubectl.sh: the pinned kubectl is amd64; this machine is $(uname -m)" >&2
	exit 1
	;;
esac

cache=${KILN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln}
dir=$cache/kubectl/$VERSION-$(printf %.16s "$SHA256")
bin=$dir/usr/bin/kubectl

# The directory appears whole (renamed from a temporary one) or not at all,
# so a kubectl found there is the pinned one, complete.
if [ ! -x "$bin" ]; then
	mkdir -p "$cache/kubectl"
	tmp=$(mktemp -d "$cache/kubectl/.tmp-XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	echo "kubectl.sh: fetching $URL" >&2
	if command -v curl >/dev/null; then
		curl -fsSL --retry 3 -o "$tmp/kubectl.deb" "$URL"
	else
		wget -q -O "$tmp/kubectl.deb" "$URL"
	fi
	echo "$SHA256  $tmp/kubectl.deb" | sha256sum -c --quiet - >&2 || {
		echo "kubectl.sh: $URL does not have the pinned sha256 $SHA256; refusing it" >&2
		exit 1
	}
	dpkg-deb -x "$tmp/kubectl.deb" "$tmp/root"
	"$tmp/root/usr/bin/kubectl" version --client >/dev/null
	# A kiln racing this one may have put it there first: either is fine.
	mv -T "$tmp/root" "$dir" 2>/dev/null || [ -x "$bin" ]
fi
echo "$bin"
