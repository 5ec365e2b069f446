#!/usr/bin/env bash
# Run the cgroup v2 part of the suite (pytest -m cgroup_v2, and the tests marked in_vm) inside
# ONE throw-away VM that boots the stock Debian kernel with a pure cgroup v2 hierarchy
# (virtme-ng, QEMU).
#
#   tests/vm/run.sh [PYTEST ARGS...]     (default: -m "cgroup_v2 or in_vm" tests/)
#
# The host root is shared read-only over 9p and the repository read-write at the same path,
# so the guest runs this checkout's .venv. Where KVM cannot boot a stock kernel (no
# /dev/kvm, or the paravirtual kvm_pvm), QEMU emulates the CPU (TCG): ~18x slower, so the
# v2 subset is kept lean. Exit status: the guest pytest's (5, no tests collected, is a
# failure); when the VM cannot run here (no qemu, no kernel with 9p, no virtme-ng) 0 with a
# "skipped" line on a developer's machine, and 1 in CI (CI=true): CI must run the v2 suite.
#
# Environment: COLOCD_VM_KERNEL=/boot/vmlinuz-..., COLOCD_VM_MEM (default 2G),
# COLOCD_VM_VERBOSE=1 (kernel log), COLOCD_VM_CMD (a command to run instead of pytest,
# given the same arguments: for debugging in the VM), COLOCD_VM_TIMEOUT_S (default 2700:
# the VM and everything it started are killed after that, exit 124; a hung guest kernel
# would otherwise hold CI until its own limit).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd -P)
venv=${VENV:-$repo/.venv}
skip() {
    if [[ ${CI:-} == true ]]; then echo "test-vm: FAILED (CI=true): cannot run the VM: $*" >&2; exit 1; fi
    echo "test-vm: skipped: $*" >&2; exit 0
}

command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 missing (make system-deps, as root)"
[[ -x $venv/bin/vng ]] || skip "virtme-ng missing in $venv (make install installs the vm extra)"
[[ -x $venv/bin/pytest ]] || skip "pytest missing in $venv (make install)"

kernel=${COLOCD_VM_KERNEL:-}
if [[ -z $kernel ]]; then
    # The newest Debian kernel whose modules include 9p (the cloud flavour has none).
    for k in $(ls -1v /boot/vmlinuz-* 2>/dev/null | tac); do
        v=${k#/boot/vmlinuz-}
        if [[ -d /lib/modules/$v/kernel/fs/9p ]]; then kernel=$k; break; fi
    done
fi
[[ -n $kernel && -r $kernel ]] || skip "no kernel with 9p in /boot (apt-get install linux-image-amd64)"

accel=(--disable-kvm)
if [[ -w /dev/kvm && ! -d /sys/module/kvm_pvm ]]; then accel=(); fi

args=("$@")
# in_vm: tests that need no cgroups but a second kernel (e.g. the network shaping ones).
(( ${#args[@]} )) || args=(-m "cgroup_v2 or in_vm" tests/)

# Single-quote for the guest's /bin/sh; vng also shlex-splits --rwdir/--cwd.
q() { local s=$1; printf "'%s'" "${s//\'/\'\\\'\'}"; }
# The guest leaves this file behind once it runs a command: proof the VM booted.
marker=$(mktemp -u "$repo/.test-vm-booted.XXXXXX")
cmd="cd $(q "$repo") || exit 125; : > $(q "$marker"); export PATH=$(q "$venv/bin:$PATH") COLOCD_IN_VM=1;"
cmd+=" ${COLOCD_VM_CMD:-$(q "$venv/bin/pytest") -q -p no:cacheprovider}"
for a in "${args[@]}"; do cmd+=" $(q "$a")"; done

verbose=(); [[ ${COLOCD_VM_VERBOSE:-0} == 1 ]] && verbose=(-v)
echo "test-vm: booting $kernel (${accel[*]:-kvm}), running pytest ${args[*]}" >&2
# QEMU opens stdout/stderr as files (separate offsets): hand it pipes so output interleaves.
set +e
# timeout signals its whole process group, so QEMU (not vng's direct child) goes too.
limit=${COLOCD_VM_TIMEOUT_S:-2700} started=$SECONDS
PATH="$venv/bin:$PATH" timeout --kill-after=30 "$limit" \
    "$venv/bin/vng" --run "$kernel" "${accel[@]}" --cpus 2 \
    --memory "${COLOCD_VM_MEM:-2G}" --force-9p --rwdir="$(q "$repo")" --cwd "$(q "$repo")" \
    --append "cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1 psi=1" "${verbose[@]}" \
    --exec "$cmd" </dev/null 2> >(cat >&2) | cat
rc=${PIPESTATUS[0]}
wait 2>/dev/null
booted=0; [[ -e $marker ]] && booted=1; rm -f "$marker"
# 124 (or 137 after --kill-after) is timeout's; the clock tells it from a guest's own status.
if (( (rc == 124 || rc == 137) && SECONDS - started >= limit )); then
    echo "test-vm: FAILED: the VM ran past $limit s and was killed (vng status $rc)" >&2
    exit 124
fi
(( booted )) || skip "the VM did not boot (vng status $rc; COLOCD_VM_VERBOSE=1 shows the kernel log)"
if (( rc == 5 )); then echo "test-vm: pytest collected no tests in the VM" >&2; exit 1; fi
exit "$rc"
