"""The ColocationPolicy model: units, validation messages, the generated CRD, deploy/."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from agent.errors import PolicyError
from agent.policy.crd import crd_manifest, render_crd
from agent.policy.defaults import BUILTIN
from agent.policy.model import QUANTITY_PATTERN, parse_policy
from agent.policy.resolve import field_paths, leaves
from agent.sources.units import (
    BITRATE_PATTERN,
    DURATION_PATTERN,
    parse_bitrate,
    parse_duration,
)
from qos.tiers import DEFAULT_TIER_SETTINGS

from .objects import policy

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
EXAMPLES = DEPLOY / "examples"


# --- units ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("5m", 300), ("1h30m", 5400), ("1.5s", 1.5), ("2h", 7200)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert re.match(DURATION_PATTERN, text)


@pytest.mark.parametrize("text", ["", "5", "5 m", "5d", "m5", "-5s", "1h 30m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)
    assert not re.match(DURATION_PATTERN, text)


@pytest.mark.parametrize(
    ("text", "bits"),
    [
        ("200Mbit", 200_000_000),
        ("1Gbit", 1_000_000_000),
        ("500kbit", 500_000),
        ("1.5Gbit", 1_500_000_000),
        ("64bit", 64),
        ("1Mibit", 1 << 20),
        ("10GBIT", 10_000_000_000),
    ],
)
def test_bitrates(text: str, bits: int) -> None:
    assert parse_bitrate(text) == bits
    assert re.match(BITRATE_PATTERN, text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("200Mbps", "tc reads 'Mbps' as bytes per second"),
        ("200", "invalid bit rate"),
        ("200Mb", "unknown unit 'Mb'"),
        ("fast", "invalid bit rate"),
    ],
)
def test_bad_bitrates(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_bitrate(text)
    assert not re.match(BITRATE_PATTERN, text)


@pytest.mark.parametrize("text", ["500m", "2Gi", "1", "0.5", "1e3", "100Ki"])
def test_quantities_match_the_crd_pattern(text: str) -> None:
    assert re.match(QUANTITY_PATTERN, text)


# --- validation messages -------------------------------------------------------------------


def problems_of(spec: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(policy("p", spec), "f.yaml[doc 2]")
    assert str(caught.value).startswith("validate f.yaml[doc 2]: ")
    return caught.value.problems


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        (
            {"scope": "Cluster", "reclaim": {"maxPercent": {"cpu": 120}}},
            "spec.reclaim.maxPercent.cpu",
            "120 is not a percentage between 0 and 100",
        ),
        (
            {"scope": "Cluster", "reclaim": {"reserved": {"cpu": "lots"}}},
            "spec.reclaim.reserved.cpu",
            "invalid quantity 'lots'",
        ),
        (
            {"scope": "Cluster", "reclaim": {"reserved": {"memory": "-1Gi"}}},
            "spec.reclaim.reserved.memory",
            "negative quantity",
        ),
        (
            {"scope": "Cluster", "predictor": {"window": 300}},
            "spec.predictor.window",
            "duration must be a string",
        ),
        (
            {"scope": "Cluster", "network": {"linkRate": "1Gbps"}},
            "spec.network.linkRate",
            "bytes per second",
        ),
        (
            {
                "scope": "Cluster",
                "network": {"tiers": {"batch": {"rate": "300Mbit", "ceil": "200Mbit"}}},
            },
            "spec.network.tiers.batch",
            "rate 300Mbit is above ceil 200Mbit",
        ),
        (
            {"scope": "Cluster", "reclaim": {"maxPercnt": {"cpu": 1}}},
            "spec.reclaim.maxPercnt",
            "unknown field",
        ),
        ({"scope": "Pool"}, "spec.scope", "'Cluster', 'NodePool' or 'Node'"),
        ({"scope": "NodePool", "nodeSelector": {}}, "spec", "scope NodePool needs priority"),
        ({"scope": "Cluster", "priority": 3}, "spec", "scope Cluster takes no priority"),
        ({"scope": "Node"}, "spec", "scope Node needs nodeNames"),
        (
            {"scope": "Cluster", "tiers": {"rules": [{"name": "r", "tier": "batch"}]}},
            "spec.tiers.rules[0]",
            "needs namespaces, priority or selector",
        ),
        (
            {
                "scope": "Cluster",
                "tiers": {"rules": [{"name": "r", "tier": "gold", "namespaces": ["x"]}]},
            },
            "spec.tiers.rules[0].tier",
            "'system', 'dedicated', 'online' or 'batch'",
        ),
        (
            {"scope": "Cluster", "margin": {"boundsPercent": {"min": 50, "max": 5}}},
            "spec.margin.boundsPercent",
            "min 50 is above max 5",
        ),
        (
            {"scope": "Cluster", "workloads": [{"name": "w", "podSelector": {}}]},
            "spec.workloads[0].tier",
            "required field is missing",
        ),
        (
            {
                "scope": "Cluster",
                "tiers": {
                    "rules": [
                        {
                            "name": "r",
                            "tier": "batch",
                            "selector": {"matchExpressions": [{"key": "k", "operator": "In"}]},
                        }
                    ]
                },
            },
            "spec.tiers.rules[0].selector.matchExpressions[0]",
            "operator In needs values",
        ),
    ],
)
def test_invalid_policies_name_the_field(spec: dict[str, Any], path: str, message: str) -> None:
    found = problems_of(spec)
    assert any(p == path and message in m for p, m in found), found


def test_all_problems_are_listed_and_the_first_is_in_the_message() -> None:
    spec = {"scope": "Cluster", "reclaim": {"maxPercent": {"cpu": 120, "memory": -1}}}
    with pytest.raises(PolicyError) as caught:
        parse_policy(policy("p", spec), "f.yaml[doc 1]")
    assert len(caught.value.problems) == 2
    assert str(caught.value).endswith("(and 1 more)")


def test_metadata_name_must_be_a_dns_subdomain() -> None:
    body = policy("Not_Valid", {"scope": "Cluster"})
    with pytest.raises(PolicyError, match=r"metadata\.name"):
        parse_policy(body, "x")


def test_units_are_kept_as_written() -> None:
    spec = {"scope": "Cluster", "reclaim": {"reserved": {"cpu": 2, "memory": "1536Mi"}}}
    parsed = parse_policy(policy("p", spec), "x").spec
    assert parsed.reclaim.reserved.cpu == "2"
    assert parsed.reclaim.reserved.memory == "1536Mi"


# --- built-in defaults ---------------------------------------------------------------------


def test_builtin_defaults_set_every_field() -> None:
    assert set(dict(leaves(BUILTIN))) == set(field_paths())


def test_builtin_tier_rules_are_qos_defaults() -> None:
    assert BUILTIN.tiers.to_tier_settings() == DEFAULT_TIER_SETTINGS


# --- the CRD -------------------------------------------------------------------------------


def test_committed_crd_is_generated_from_the_model() -> None:
    committed = (DEPLOY / "crd.yaml").read_text()
    assert committed == render_crd(), (
        "deploy/crd.yaml is stale: run `colocd policy crd > deploy/crd.yaml`"
    )


def walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    nodes = [(path, schema)]
    for name, sub in schema.get("properties", {}).items():
        nodes += walk(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            nodes += walk(schema[key], f"{path}[{key}]")
    return nodes


def test_crd_schema_is_structural() -> None:
    schema = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in walk(schema):
        assert "$ref" not in node and "const" not in node and "default" not in node, path
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
        else:
            assert "type" in node and "anyOf" not in node, path
        assert not ("properties" in node and "additionalProperties" in node), path


def crd_validator() -> jsonschema.Draft4Validator:
    schema = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return jsonschema.Draft4Validator(schema)


def example_documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        docs += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_examples_validate_against_the_crd_schema_and_the_model() -> None:
    docs = example_documents()
    assert {d["spec"]["scope"] for _, d in docs} == {"Cluster", "NodePool", "Node"}
    validator = crd_validator()
    for name, doc in docs:
        errors = [e.message for e in validator.iter_errors(doc)]
        assert errors == [], name
        parse_policy(doc, name)


def test_crd_schema_rejects_what_the_model_rejects() -> None:
    validator = crd_validator()
    bad = policy("p", {"scope": "Cluster", "reclaim": {"maxPercent": {"cpu": 120}}})
    assert any(
        "120 is greater than the maximum of 100" in e.message for e in validator.iter_errors(bad)
    )
    bad = policy("p", {"scope": "Cluster", "network": {"linkRate": "fast"}})
    assert list(validator.iter_errors(bad))


# --- deploy/ manifests -------------------------------------------------------------------------

K8S_VERSION = kubernetes_validate.latest_version()


def manifests() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            found += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return found


def test_every_manifest_is_valid_for_a_current_kubernetes() -> None:
    docs = manifests()
    kinds = sorted({d["kind"] for _, d in docs})
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "DaemonSet",
        "Deployment",
        "Namespace",
        "ServiceAccount",
    ]
    for name, doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises with the reason
        assert name


def test_the_validator_catches_a_mistake() -> None:
    daemonset = copy.deepcopy(next(d for _, d in manifests() if d["kind"] == "DaemonSet"))
    daemonset["spec"]["template"]["spec"]["hostPIDD"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(daemonset, K8S_VERSION, strict=True)


def test_daemonset_follows_the_brief() -> None:
    ds = next(d for _, d in manifests() if d["kind"] == "DaemonSet")
    pod_spec = ds["spec"]["template"]["spec"]
    agent = pod_spec["containers"][0]
    assert pod_spec["hostPID"] is True
    assert pod_spec["priorityClassName"] == "system-node-critical"
    assert pod_spec["serviceAccountName"] == "colocd-agent"
    env = {e["name"]: e for e in agent["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert agent["resources"] == {
        "requests": {"cpu": "50m", "memory": "128Mi"},
        "limits": {"cpu": "200m", "memory": "256Mi"},
    }
    security = agent["securityContext"]
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["capabilities"]["add"] == ["SYS_RESOURCE"]  # the fast path's triggers
    assert security["privileged"] is False
    mounts = {m["name"]: m["mountPath"] for m in agent["volumeMounts"]}
    volumes = {v["name"]: v["hostPath"]["path"] for v in pod_spec["volumes"]}
    assert volumes["cgroup"] == "/sys/fs/cgroup"
    assert f"--cgroup-root={mounts['cgroup']}" in agent["args"]
    # Each added capability is explained right above it.
    text = (DEPLOY / "daemonset.yaml").read_text()
    for cap in security["capabilities"].get("add", []):
        assert re.search(rf"# {cap}: .+\n(\s+#.*\n)*\s+- {cap}\n", text), cap


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_renders_the_deployment() -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True, check=True
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert len(docs) == len(manifests())
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        if doc["kind"] in ("DaemonSet", "Deployment", "ServiceAccount"):
            assert doc["metadata"]["namespace"] == "colocd-system"
