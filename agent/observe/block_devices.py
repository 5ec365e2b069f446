"""The node's block devices from sysfs, for io.max's `MAJOR:MINOR` keys.

    /sys/block/<name>/dev      "254:0"
    /sys/block/<name>/device   present for disks; loop, ram, zram and other virtual
                               devices have none (/sys/devices/virtual/block)

Partitions are not listed: limits go on whole devices, as kubelet's and runc's do. The
root is a constructor argument so tests can lay out a machine.
"""

from __future__ import annotations

from pathlib import Path

from qos.samples import BlockDevice

__all__ = ["SYSFS_BLOCK_ROOT", "read_block_devices"]

SYSFS_BLOCK_ROOT = Path("/sys/block")


def read_block_devices(root: Path = SYSFS_BLOCK_ROOT) -> tuple[BlockDevice, ...]:
    out = []
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return ()
    for entry in entries:
        try:
            number = (entry / "dev").read_text().strip()
        except OSError:
            continue
        major, sep, minor = number.partition(":")
        if sep and major.isdigit() and minor.isdigit():
            out.append(BlockDevice(entry.name, number, (entry / "device").exists()))
    return tuple(out)
