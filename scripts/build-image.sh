#!/usr/bin/env bash
# make image: the colocd OCI image built here, with no container daemon and no registry.
#
#   1. the colocd wheel, built from this tree (pip; its build deps come from PyPI);
#   2. a minimal Debian root filesystem (mmdebstrap, Essential set + image/packages.txt from
#      Debian's mirror), a venv in /opt/colocd with the wheel and its deps from PyPI, the
#      non-root user colocd (65532);
#   3. packed as an OCI image layout with umoci (one layer, the same config as the
#      Containerfile: entrypoint `colocd run`, user 65532, labels version and source).
#
# umoci, because it reads and writes an OCI image layout directory directly: no daemon, no
# containers-storage under /var/lib (buildah's), no registry (skopeo only copies images, it
# cannot build one), one binary from Debian; and `umoci unpack` makes the runtime bundle the
# smoke test hands to runc.
#
# Cached in build/image/<key>/ where <key> hashes every input (this script, the package
# list, pyproject.toml, the Containerfile and the Python sources): a warm run only hashes.
# Next to the image it writes dpkg.txt and pip-freeze.txt (the SBOM), size.txt and tag.txt;
# build/image/current points at the latest. Needs root (mmdebstrap's chroot).
#
# Usage: scripts/build-image.sh [--print-tag]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
REPO=ghcr.io/colocd/colocd
SOURCE=https://github.com/colocd/colocd
version=$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
tag="$REPO:$version"
if [[ ${1:-} == --print-tag ]]; then echo "$tag"; exit 0; fi

inputs() {
  # (README.md is left out: the wheel carries it as its description only, and editing the
  # docs need not rebuild the image.)
  git ls-files -co --exclude-standard -- agent qos isolation lab \
    | grep -v '/__pycache__/' | sort
  echo scripts/build-image.sh image/packages.txt pyproject.toml Containerfile | tr ' ' '\n'
}
key=$( (echo "$SUITE $MIRROR $tag"; inputs | xargs sha256sum) | sha256sum | cut -c1-16)
out=build/image/$key
if [[ -f $out/tag.txt ]]; then
  echo "image: $(cat "$out/tag.txt") (cached, build/image/$key)"
  cat "$out/size.txt"
  ln -sfn "$key" build/image/current
  exit 0
fi
[[ $(id -u) -eq 0 ]] || { echo "image: needs root (mmdebstrap --mode=root)" >&2; exit 1; }
for tool in mmdebstrap umoci; do
  command -v "$tool" >/dev/null || { echo "image: $tool missing (make system-deps)" >&2; exit 1; }
done
started=$(date +%s)
mkdir -p build
work=$(mktemp -d build/image-work.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The wheel and its deps are fetched here, with this machine's pip and its settings (proxy,
# CA); the chroot installs from that wheelhouse only (--no-index, --isolated from this
# machine's PIP_* settings), so it needs no network.
# (Without this machine's notes on its own unused pip find-links; pip's status stays.)
pip_() { "$PY" -m pip "$@" 2> >(grep -v "' is ignored: it is" >&2); }
pip_ wheel -q --no-deps -w "$work/wheels" .
pip_ download -q -d "$work/wheels" "$work"/wheels/colocd-*.whl
# Debian's .debs are kept between builds (outside build/image, which holds one image).
debs=build/image-debs
mkdir -p "$debs"
packages=$(grep -v '^#' image/packages.txt | paste -sd,)
# The customize hooks run inside the new root (chroot): the venv, the user, then the SBOM.
# No manuals, docs (copyrights stay) or translations: what debian:slim leaves out too.
mmdebstrap --quiet --mode=root --variant=essential --include="$packages" \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --setup-hook='mkdir -p "$1/var/cache/apt/archives"' \
  --setup-hook="sync-in $debs /var/cache/apt/archives" \
  --customize-hook="sync-out /var/cache/apt/archives $debs" \
  --customize-hook="copy-in $work/wheels /tmp" \
  --customize-hook='chroot "$1" python3 -m venv /opt/colocd' \
  --customize-hook='chroot "$1" /opt/colocd/bin/pip install -q --isolated --no-cache-dir --no-index --find-links /tmp/wheels colocd' \
  --customize-hook='rm -rf "$1/tmp/wheels"' \
  --customize-hook='echo "colocd:x:65532:65532:colocd:/nonexistent:/usr/sbin/nologin" >> "$1/etc/passwd"' \
  --customize-hook='echo "colocd:x:65532:" >> "$1/etc/group"' \
  --customize-hook="chroot \"\$1\" dpkg-query -W -f='\${Package}\t\${Version}\t\${Architecture}\n' > $work/dpkg.txt" \
  --customize-hook="chroot \"\$1\" /opt/colocd/bin/pip freeze --all > $work/pip-freeze.txt" \
  --customize-hook='rm -rf "$1/var/cache/apt/"* "$1/var/lib/apt/lists/"* "$1/var/log/"*' \
  "$SUITE" "$work/rootfs" "$MIRROR"

oci=$work/oci
umoci init --layout "$oci"
umoci new --image "$oci:$version"
umoci insert --image "$oci:$version" --history.created_by "mmdebstrap $SUITE + colocd $version" \
  "$work/rootfs" /
umoci config --image "$oci:$version" \
  --config.entrypoint /opt/colocd/bin/colocd --config.entrypoint run \
  --config.user 65532:65532 \
  --config.env PATH=/opt/colocd/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.env PYTHONDONTWRITEBYTECODE=1 \
  --config.label org.opencontainers.image.title=colocd \
  --config.label "org.opencontainers.image.version=$version" \
  --config.label "org.opencontainers.image.source=$SOURCE" \
  --config.label org.opencontainers.image.licenses=Apache-2.0 \
  --config.label "org.opencontainers.image.ref.name=$tag" \
  --history.created_by "colocd image config"
umoci gc --layout "$oci"

packed=$(du -sb "$oci/blobs" | cut -f1)
unpacked=$(du -sb "$work/rootfs" | cut -f1)
rm -rf "$work/rootfs" "$work/wheels"
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "size: $(mib "$packed") packed (OCI blobs), $(mib "$unpacked") unpacked" > "$work/size.txt"
echo "$tag" > "$work/tag.txt"
rm -rf build/image/*/   # one image kept: the current one
mkdir -p build/image && mv "$work" "$out"
trap - EXIT
ln -sfn "$key" build/image/current
echo "image: $tag (built in $(( $(date +%s) - started )) s, build/image/$key/oci:$version)"
cat "$out/size.txt"
