"""IO per tier in the plan: weights, and batch's io.max on the node's disks."""

from __future__ import annotations

from pathlib import Path

from agent.observe.block_devices import read_block_devices
from qos.decide import BrainState, decide
from qos.io import plan_io
from qos.plan import DeviceLimit
from qos.samples import BlockDevice
from qos.settings import IoSettings, QosSettings
from tests.qos_builders import snapshot

DEVICES = (
    BlockDevice("loop0", "7:0", False),
    BlockDevice("nvme0n1", "259:0", True),
    BlockDevice("vda", "254:0", True),
)


def test_weights_alone_by_default() -> None:
    io = plan_io(IoSettings(), DEVICES)
    assert io is not None and (io.online_weight, io.batch_weight) == (100, 10)
    assert io.batch_limits == ()
    assert plan_io(IoSettings(enabled=False), DEVICES) is None


def test_batch_limits_go_on_every_disk_unless_devices_are_named() -> None:
    s = IoSettings(batch_read_bps=50 << 20, batch_write_iops=200)
    io = plan_io(s, DEVICES)
    assert io is not None
    assert io.batch_limits == (
        DeviceLimit("259:0", "nvme0n1", rbps=50 << 20, wiops=200),
        DeviceLimit("254:0", "vda", rbps=50 << 20, wiops=200),
    )
    assert "read 50Mi/s, write 200 IO/s on nvme0n1 (259:0), vda (254:0)" in io.reason
    named = plan_io(s.model_copy(update={"devices": ("loop0", "sdz")}), DEVICES)
    assert named is not None and [d.name for d in named.batch_limits] == ["loop0"]
    assert "(not on this node: sdz)" in named.reason


def test_decide_plans_io_from_the_snapshots_devices() -> None:
    s = QosSettings.model_validate({"io": {"batch_write_bps": 1 << 20}})
    snap = snapshot(1.0)._replace(block_devices=DEVICES)
    plan, _ = decide(snap, BrainState(), s, 1.0)
    assert plan.io is not None and [d.device for d in plan.io.batch_limits] == ["259:0", "254:0"]


def test_block_devices_are_read_from_sysfs(tmp_path: Path) -> None:
    for name, number, disk in (("vda", "254:0", True), ("loop3", "7:3", False)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "dev").write_text(number + "\n")
        if disk:
            (tmp_path / name / "device").mkdir()
    (tmp_path / "broken").mkdir()  # no dev file: left out
    assert read_block_devices(tmp_path) == (
        BlockDevice("loop3", "7:3", False),
        BlockDevice("vda", "254:0", True),
    )
    assert read_block_devices(tmp_path / "absent") == ()
    assert all(":" in d.device for d in read_block_devices())  # this machine's
