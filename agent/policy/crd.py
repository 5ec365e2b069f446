"""The ColocationPolicy CustomResourceDefinition, generated from the pydantic models.

pydantic writes JSON Schema; a CRD needs a *structural* OpenAPI v3 schema. `structural()`
converts: it inlines `$ref`s, turns `Optional[X]` (anyOf X|null) into X, `const` into a
one-value `enum` and numeric exclusive bounds into OpenAPI 3.0's boolean ones. It drops
titles, defaults (the API server would apply them, and an unset field must stay unset so
layers merge) and `additionalProperties: false` (structural schemas prune unknown fields by
themselves), and refuses any keyword it does not know how to carry.

`colocd policy crd > deploy/crd.yaml` writes it; a test checks the committed file is current.
"""

from __future__ import annotations

from typing import Any

import yaml

from agent.policy.model import (
    API_GROUP,
    API_VERSION,
    KIND,
    PLURAL,
    ColocationPolicySpec,
    PolicyStatus,
)

# Keywords a structural schema may carry over from pydantic's output.
_KEPT = {
    "type",
    "description",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "pattern",
    "format",
    "required",
    "x-kubernetes-int-or-string",
}
_DROPPED = {"title", "default", "$defs"}

# Rules pydantic checks in Python, repeated as CEL so the API server refuses such objects too.
SPEC_VALIDATIONS = (
    {
        "rule": "self.scope != 'NodePool' || (has(self.nodeSelector) && has(self.priority))",
        "message": "scope NodePool needs nodeSelector and priority",
    },
    {
        "rule": "self.scope != 'Node' || (has(self.nodeNames) && size(self.nodeNames) > 0)",
        "message": "scope Node needs nodeNames",
    },
    {
        "rule": "self.scope == 'NodePool' || (!has(self.nodeSelector) && !has(self.priority))",
        "message": "only scope NodePool takes nodeSelector and priority",
    },
    {
        "rule": "self.scope == 'Node' || !has(self.nodeNames)",
        "message": "only scope Node takes nodeNames",
    },
)


def structural(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    if "anyOf" in schema and not schema.get("x-kubernetes-int-or-string"):
        branches = [b for b in schema["anyOf"] if b != {"type": "null"}]
        if len(branches) != 1:
            raise ValueError(f"a CRD cannot carry the union {schema['anyOf']}")
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        return structural({**branches[0], **rest}, defs)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROPPED or (key == "additionalProperties" and value is False):
            continue
        if key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):  # JSON Schema -> OpenAPI 3.0
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "properties":
            out["properties"] = {k: structural(v, defs) for k, v in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = structural(value, defs)
        elif key == "anyOf":  # int-or-string: branches carry only their type
            out["anyOf"] = [{"type": b["type"]} for b in value]
        elif key == "description":
            out[key] = " ".join(value.split())
        elif key in _KEPT:
            out[key] = list(value) if isinstance(value, list) else value
        else:
            raise ValueError(f"a CRD schema cannot carry {key!r}: {value!r}")
    # type and description first, as people write them
    return dict(sorted(out.items(), key=lambda kv: (kv[0] != "type", kv[0] != "description")))


def _schema(model: type) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return structural(raw, raw.get("$defs", {}))


def openapi_schema() -> dict[str, Any]:
    spec = _schema(ColocationPolicySpec)
    spec["x-kubernetes-validations"] = [dict(v) for v in SPEC_VALIDATIONS]
    return {
        "type": "object",
        "description": "Layered colocation settings: cluster default, node pools, nodes.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": _schema(PolicyStatus),
        },
    }


def crd_manifest() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{API_GROUP}"},
        "spec": {
            "group": API_GROUP,
            "scope": "Cluster",
            "names": {
                "plural": PLURAL,
                "singular": KIND.lower(),
                "kind": KIND,
                "listKind": f"{KIND}List",
                "shortNames": ["colocpol", "cpol"],
                "categories": ["colocd"],
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Scope", "type": "string", "jsonPath": ".spec.scope"},
                        {"name": "Priority", "type": "integer", "jsonPath": ".spec.priority"},
                        {
                            "name": "Valid",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="Valid")].status',
                        },
                        {"name": "Nodes", "type": "integer", "jsonPath": ".status.matchedNodes"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


HEADER = "# Generated by `colocd policy crd` from agent/policy/model.py; do not edit.\n"


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_crd() -> str:
    return HEADER + yaml.dump(crd_manifest(), Dumper=_NoAliases, sort_keys=False, width=100)
