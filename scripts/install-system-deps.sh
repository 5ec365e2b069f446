#!/usr/bin/env bash
# Installs the Debian packages the test suite and benchmarks use, when running as root and
# something is missing. Without root it only says what is missing (the tests that need a
# package then skip with a reason).
set -euo pipefail
PACKAGES=(
  qemu-system-x86 linux-image-amd64 busybox-static  # the pure cgroup v2 VM (tests/vm)
  iproute2 iperf3 nftables libnftables1             # netns, HTB, traffic; libnftables: the agent
  prometheus                                        # a real Prometheus scraping the agent
  systemd                                           # systemd-analyze verify of the unit
  mmdebstrap umoci runc                             # make image and its in-image smoke test
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]} == 0)) && exit 0
if [[ $(id -u) -ne 0 ]]; then
  echo "install-system-deps: not root; missing: ${missing[*]} (tests needing them will skip)" >&2
  exit 0
fi
echo "install-system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
