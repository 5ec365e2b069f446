"""IO per tier on real cgroups and a loop device of the test's own: batch's reads yield to
online's under the io.max colocd writes from the policy, and revert lifts it.

On this v1 host blkio.bfq.weight is absent (no BFQ scheduler): io.weight is reported as
not written, and the throttle (blkio.throttle.*, honoured by every scheduler) does the
work. v1's throttle is not hierarchical, so it sits on every batch cgroup. Measured here
(2 vCPUs, 3 s): without colocd online 95 MiB/s, batch 175 MiB/s; with a 4 MiB/s batch
limit online 76 MiB/s, batch 3.9 MiB/s. It runs in the cgroup v2 VM of tests/vm as well
(its kernel loads the loop driver on `modprobe loop`), where io.max holds the subtree from
besteffort.
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from isolation.detect import Hierarchy
from isolation.knobs import IoLimit
from isolation.layout import Driver
from lab.kubelet_tree import KubeletTree
from qos.k8s_qos import QOSClass
from qos.pod import BATCH_CPU, Container, Pod, Resources
from qos.settings import QosSettings
from qos.state import NodeCapacity
from tests.loop_device import loop_device, loop_unavailable
from tests.tree_loop import tree_loop

pytestmark = [pytest.mark.cgroup_v1, pytest.mark.cgroup_v2]

LIMIT = 4 << 20  # batch read bytes/s
SECONDS = 3.0


def read_both(tree: KubeletTree, online: Pod, batch: Pod, device: Path) -> tuple[float, float]:
    """Bytes/s each pod reads from `device` while both read at once."""
    argv = [sys.executable, "-m", "lab.workloads.io_reader", str(device), str(SECONDS)]
    procs = [
        tree.spawn(p, p.containers[0].name, argv, stdout=subprocess.PIPE, text=True)
        for p in (online, batch)
    ]
    rates = []
    for proc in procs:
        out, _ = proc.communicate(timeout=SECONDS + 30)
        got = json.loads(out)
        rates.append(got["bytes"] / got["seconds"])
    return rates[0], rates[1]


@pytest.mark.skipif(loop_unavailable() is not None, reason=loop_unavailable() or "")
def test_batch_io_yields_to_online_under_colocds_io_max(
    hierarchy: Hierarchy, tmp_path: Path
) -> None:
    with loop_device() as device, KubeletTree(Driver.CGROUPFS, hierarchy=hierarchy) as tree:
        res = Resources({"cpu": Decimal("0.5")}, {"cpu": Decimal(1)})
        web = tree.add_pod(Pod("shop", "web", containers=(Container("app", res),)))
        job = tree.add_pod(
            Pod("jobs", "job", containers=(Container("c", Resources({BATCH_CPU: Decimal(500)})),))
        )
        pods = tmp_path / "pods"
        pods.mkdir()
        for p in (web, job):
            tree.write_manifest(p, pods)

        # The IO is compared, not the CPU: batch gets the default CPU weight and colocd
        # puts no CPU setting on it below (on this busy shared machine kubelet's shares=2,
        # or cpu.idle, would leave the batch reader too little CPU to issue reads at all).
        be = tree.layout.qos_cgroup(QOSClass.BEST_EFFORT)
        tree.cgroups.write("cpu.shares", be, 1024)
        # Without colocd both read about alike.
        online, batch = read_both(tree, web, job, device)
        assert batch > 4 * LIMIT, (online, batch)

        qos = QosSettings.model_validate(
            {
                "io": {"batch_read_bps": LIMIT, "devices": [device.name]},
                "cpu": {"idle": False, "mechanism": "idle-only"},
            }
        )
        state = tmp_path / "state"
        loop = tree_loop(tree, pods, state, qos, NodeCapacity(2000, 4 << 30), node_name="n")
        loop.prime()
        result = loop.tick()
        assert result is not None and result.report is not None
        assert not result.report.failed, result.report.failed
        io = result.plan.io
        number = (Path("/sys/block") / device.name / "dev").read_text().strip()
        assert io is not None and [d.device for d in io.batch_limits] == [number]
        assert f"on {device.name} ({number})" in io.reason
        want = (IoLimit(number, rbps=LIMIT),)
        container = tree.container_cgroup(job, "c")
        assert tree.cgroups.read("io.max", be).value == want
        v1 = tree.cgroups.version == 1  # v1's throttle is per cgroup, v2's holds the subtree
        assert tree.cgroups.read("io.max", container).value == (want if v1 else ())
        assert tree.cgroups.read("io.max", tree.pod_cgroup(web)).value == ()
        if tree.cgroups.unsupported("io.weight") is None and tree.cgroups.version == 2:
            assert tree.cgroups.read("io.weight", be).value == qos.io.batch_weight

        online, batch = read_both(tree, web, job, device)
        # The throttle allows a first slice above the rate: generous bounds.
        assert batch <= 2 * LIMIT, batch
        assert online >= 5 * batch, (online, batch)

        reverted = loop.close()
        assert reverted is not None and not reverted.failed
        assert tree.cgroups.read("io.max", be).value == ()
        assert tree.cgroups.read("io.max", container).value == ()
