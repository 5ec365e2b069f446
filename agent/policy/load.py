"""Reading ColocationPolicy documents from files, for `colocd policy validate|resolve`.

Accepts what `kubectl get colocationpolicies -o yaml` prints and what people keep in git: one
or several YAML documents per file, JSON, `List`/`ColocationPolicyList` documents, and
directories of them. Each problem names the file, the document index and the field path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agent.errors import ManifestError, PolicyError
from agent.policy.model import KIND, ColocationPolicy, parse_policy
from agent.sources.manifests import read_documents


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    where: str  # "file[doc N]" or "file[doc N].items[i]"
    policy: ColocationPolicy


@dataclass(slots=True)
class PolicyLoad:
    policies: list[LoadedPolicy] = field(default_factory=list)
    errors: list[PolicyError | ManifestError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _candidates(body: Any, where: str) -> tuple[list[tuple[str, Any]], list[str]]:
    """(where, body) of each ColocationPolicy in a document, and what was skipped."""
    if isinstance(body, dict) and body.get("kind") in ("List", f"{KIND}List"):
        found, skipped = [], []
        for i, item in enumerate(body.get("items") or []):
            kind = item.get("kind", KIND) if isinstance(item, dict) else None
            if kind == KIND:
                found.append((f"{where}.items[{i}]", item))
            else:
                skipped.append(f"{where}.items[{i}]: skipped {kind or 'a non-object'}")
        return found, skipped
    kind = body.get("kind") if isinstance(body, dict) else None
    if kind == KIND:
        return [(where, body)], []
    return [], [f"{where}: skipped {kind or 'a document with no kind'} (not a {KIND})"]


def load_policies(paths: Iterable[str]) -> PolicyLoad:
    """Every policy under `paths`; problems are collected, never raised. A name seen twice is
    an error (the API server would hold only one of them)."""
    result = PolicyLoad()
    seen: dict[str, str] = {}
    for doc in read_documents(paths):
        if isinstance(doc, ManifestError):
            result.errors.append(doc)
            continue
        found, skipped = _candidates(doc.body, f"{doc.source}[doc {doc.index}]")
        result.warnings.extend(skipped)
        for where, body in found:
            try:
                policy = parse_policy(body, where)
            except PolicyError as err:
                result.errors.append(err)
                continue
            if policy.name in seen:
                result.errors.append(
                    PolicyError(
                        where,
                        f"duplicate name {policy.name!r} (first at {seen[policy.name]})",
                        "metadata.name",
                    )
                )
                continue
            seen[policy.name] = where
            result.policies.append(LoadedPolicy(where, policy))
    return result
