"""The image `make image` builds, run the way the DaemonSet runs it: unpacked with umoci and
started by a real OCI runtime (runc) with a read-only root filesystem and exactly the
capabilities deploy/daemonset.yaml grants. Inside: `colocd --version` as the image's own
(non-root) user, then `colocd run --once --dry-run` as uid 0 on a kubelet-like tree.

Harmless to the host: runc makes the container's cgroup beneath the test's own (a relative
cgroupsPath) and removes it; the container has its own PID, mount, network, IPC and UTS
namespaces; the tree's cgroups are bind-mounted read-only (a dry run writes nothing, and
could not). Not crun: it refuses a hybrid host whose cgroup2 mount has a controller
(hugetlb here), even with --cgroup-manager=disabled.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from isolation.detect import Hierarchy
from isolation.layout import Driver
from lab.kubelet_tree import BUSY_LOOP, KubeletTree
from qos.k8s_qos import QOSClass
from qos.pod import Container, Pod, Resources

pytestmark = [pytest.mark.cgroup_v1, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("mmdebstrap", "umoci", "runc")


@pytest.fixture(scope="module")
def image() -> Path:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (make system-deps)")
    script = str(ROOT / "scripts" / "build-image.sh")
    built = subprocess.run([script], check=False, cwd=ROOT, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    assert "size: " in built.stdout
    return (ROOT / "build" / "image" / "current").resolve()


@pytest.fixture(scope="module")
def unpacked(image: Path) -> Path:
    """The image unpacked once per image (umoci: the rootfs and the runtime config it makes
    from the image's), kept next to it in build/image/<key>/: unpacking costs ~40 s here."""
    target = image / "unpacked"
    if not (target / "config.json").exists():
        tag = (image / "tag.txt").read_text().strip().rsplit(":", 1)[1]
        work = image / f"unpacking-{secrets.token_hex(4)}"
        subprocess.run(
            ["umoci", "unpack", "--image", f"{image / 'oci'}:{tag}", str(work)],
            check=True, capture_output=True,
        )  # fmt: skip
        work.rename(target)
    return target


@pytest.fixture
def bundle(unpacked: Path, tmp_path: Path) -> Path:
    """A bundle of this test's own: its config.json, the shared rootfs (read-only)."""
    (tmp_path / "bundle").mkdir()
    shutil.copy(unpacked / "config.json", tmp_path / "bundle" / "image-config.json")
    (tmp_path / "bundle" / "rootfs-path").write_text(str(unpacked / "rootfs"))
    return tmp_path / "bundle"


def daemonset_agent() -> dict[str, Any]:
    ds = next(yaml.safe_load_all((ROOT / "deploy" / "daemonset.yaml").read_text()))
    return ds["spec"]["template"]["spec"]["containers"][0]


# Capability numbers (linux/capability.h) of those a DaemonSet of ours may add.
CAP_NUMBERS = {"KILL": 5, "NET_ADMIN": 12, "SYS_RESOURCE": 24}


def held_here(cap: str) -> bool:
    """In this process's bounding set: a runtime can only grant what its caller holds."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if "CapBnd" in x)
    return bool(int(line.split()[1], 16) >> CAP_NUMBERS[cap] & 1)


def granted_caps() -> list[str]:
    """The DaemonSet's added capabilities, less any this machine cannot hand out (this
    sandbox withholds SYS_RESOURCE): the container gets fewer, never more."""
    caps = daemonset_agent()["securityContext"]["capabilities"]
    assert caps["drop"] == ["ALL"]
    return [f"CAP_{c}" for c in caps.get("add", []) if held_here(c)]


def bind(source: Path, destination: str) -> dict[str, Any]:
    return {
        "destination": destination,
        "type": "bind",
        "source": str(source),
        "options": ["bind", "ro", "nosuid", "nodev", "noexec"],
    }


def run_in_image(
    bundle: Path, args: list[str], *, uid: int | None, mounts: list[dict[str, Any]]
) -> Any:
    """Run `args` in the image as the DaemonSet would; the CompletedProcess."""
    config = json.loads((bundle / "image-config.json").read_text())
    process = config["process"]
    process.update(args=args, terminal=False)
    if uid is not None:
        process["user"] = {"uid": uid, "gid": uid}
    caps = granted_caps()
    process["capabilities"] = {k: caps for k in ("bounding", "effective", "permitted")}
    process["noNewPrivileges"] = True  # allowPrivilegeEscalation: false
    # readOnlyRootFilesystem (the unpacked rootfs is shared; runc only adds mount points)
    config["root"] = {"path": (bundle / "rootfs-path").read_text(), "readonly": True}
    # No cgroup of the host's inside: only what the test binds.
    config["mounts"] = [m for m in config["mounts"] if m["destination"] != "/sys/fs/cgroup"]
    config["mounts"] += mounts
    config["linux"].pop("resources", None)
    name = f"colocd-smoke-{secrets.token_hex(4)}"
    # A relative cgroupsPath: runc makes the container's cgroup beneath its own, in every
    # controller, and `runc delete` removes it.
    config["linux"]["cgroupsPath"] = name
    (bundle / "config.json").write_text(json.dumps(config))
    try:
        return subprocess.run(
            ["runc", "run", "--bundle", str(bundle), name],
            check=False, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    finally:
        subprocess.run(["runc", "delete", "--force", name], check=False, capture_output=True)


def test_the_image_says_its_version_as_its_own_non_root_user(bundle: Path) -> None:
    out = run_in_image(bundle, ["colocd", "--version"], uid=None, mounts=[])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "colocd 0.1.0"
    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["user"]["uid"] == 65532
    image = json.loads((bundle / "image-config.json").read_text())
    assert image["process"]["args"] == ["/opt/colocd/bin/colocd", "run"]
    labels = config["annotations"]
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert labels["org.opencontainers.image.source"].startswith("https://")


@pytest.fixture
def tree(hierarchy: Hierarchy) -> Iterator[KubeletTree]:
    with KubeletTree(Driver.CGROUPFS, hierarchy=hierarchy) as t:
        yield t


def test_a_dry_run_tick_inside_the_image_reads_the_tree_and_writes_nothing(
    bundle: Path, tree: KubeletTree, tmp_path: Path
) -> None:
    pods = tmp_path / "pods"
    pods.mkdir()
    web = Pod("shop", "web", containers=(Container("app", Resources({"cpu": Decimal("0.5")})),))
    job = tree.add_pod(Pod("jobs", "a", containers=(Container("loop"),)))
    for p in (tree.add_pod(web), job):
        tree.write_manifest(p, pods)
    tree.spawn(job, "loop", BUSY_LOOP)
    be = tree.layout.qos_cgroup(QOSClass.BEST_EFFORT)
    knobs = ("cpu.idle", "cpu.shares", "cpuset.cpus", "memory.max")
    before = {k: tree.cgroups.read(k, be).value for k in knobs}
    # The tree's root in every hierarchy, as the node's cgroup root of the container.
    mounts = [bind(m / tree.root, f"/host/cgroup/{name}") for name, m in tree.mounts.items()]
    mounts.append(bind(pods, "/etc/colocd/pods"))
    argv = ["colocd", "run", "--pods", "/etc/colocd/pods", "--cgroup-root", "/host/cgroup"]
    out = run_in_image(
        bundle, [*argv, "--once", "--dry-run", "--node-name", "smoke"], uid=0, mounts=mounts
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("plan (dry run, nothing is written)"), out.stdout
    idle_row = next(line for line in out.stdout.splitlines() if line.startswith("cpu.idle"))
    assert "/kubepods/besteffort" in idle_row and idle_row.split()[-2:] == ["0", "1"]
    assert {k: tree.cgroups.read(k, be).value for k in knobs} == before
