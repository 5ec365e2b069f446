"""Block IO per tier: weights for online and batch, and batch's limits on the node's disks.

The policy names limits per disk and, optionally, which devices; the node's block devices
(name and `MAJOR:MINOR`, read by the agent) turn them into one io.max entry per device.
"""

from __future__ import annotations

from qos.plan import DeviceLimit, IoPlan
from qos.samples import BlockDevice
from qos.settings import IoSettings
from qos.units import Unit, format_amount


def _or_none(value: int) -> int | None:
    return value or None


def plan_io(settings: IoSettings, devices: tuple[BlockDevice, ...]) -> IoPlan | None:
    if not settings.enabled:
        return None
    why = f"io.weight online {settings.online_weight}, batch {settings.batch_weight}"
    limits: tuple[DeviceLimit, ...] = ()
    if settings.limited:
        wanted = set(settings.devices)
        chosen = [d for d in devices if (d.name in wanted if wanted else d.disk)]
        limits = tuple(
            DeviceLimit(
                d.device,
                d.name,
                _or_none(settings.batch_read_bps),
                _or_none(settings.batch_write_bps),
                _or_none(settings.batch_read_iops),
                _or_none(settings.batch_write_iops),
            )
            for d in sorted(chosen)
        )
        parts = [
            f"{what} {text}"
            for what, value, text in (
                (
                    "read",
                    settings.batch_read_bps,
                    f"{format_amount(settings.batch_read_bps, Unit.BYTES)}/s",
                ),
                (
                    "write",
                    settings.batch_write_bps,
                    f"{format_amount(settings.batch_write_bps, Unit.BYTES)}/s",
                ),
                ("read", settings.batch_read_iops, f"{settings.batch_read_iops} IO/s"),
                ("write", settings.batch_write_iops, f"{settings.batch_write_iops} IO/s"),
            )
            if value
        ]
        names = ", ".join(f"{d.name} ({d.device})" for d in sorted(chosen)) or "no device found"
        missing = sorted(wanted - {d.name for d in devices})
        why += f"; batch io.max {', '.join(parts)} on {names}"
        if missing:
            why += f" (not on this node: {', '.join(missing)})"
    return IoPlan(settings.online_weight, settings.batch_weight, limits, why)
