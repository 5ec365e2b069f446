"""A real Prometheus server (Debian package `prometheus`) on loopback, for tests, and the
shipped files under deploy/ that configure one.

The server runs from a temporary directory (config, TSDB, log), listens on a free loopback
port, and is stopped by its PID. `query()` goes through the HTTP API, so Prometheus itself
parses and evaluates every expression.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.processes import free_port, wait_for

__all__ = [
    "DASHBOARD",
    "DEPLOY",
    "PROMETHEUS",
    "PROMTOOL",
    "RULES",
    "RULES_TEST",
    "SCRAPE_CONFIG",
    "PromQLError",
    "PrometheusServer",
    "kubernetes_sd_as_static",
    "meta_labels",
]

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yaml"
SCRAPE_CONFIG = DEPLOY / "prometheus" / "scrape-config.yaml"
DASHBOARD = DEPLOY / "grafana" / "colocd-dashboard.json"
RULES_TEST = ROOT / "tests" / "prometheus" / "rules_test.yaml"
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")


class PromQLError(Exception):
    """Prometheus refused a request (bad expression, bad parameter)."""


def meta_labels(pod: dict[str, Any], node: str, name: str) -> dict[str, str]:
    """The `__meta_kubernetes_pod_*` labels Kubernetes service discovery gives a pod made
    from `pod` (a pod template: metadata with labels and annotations) on `node`."""

    def clean(key: str) -> str:
        return re.sub(r"[^a-zA-Z0-9_]", "_", key)

    meta = pod["metadata"]
    labels = {
        f"__meta_kubernetes_pod_label_{clean(k)}": v for k, v in meta.get("labels", {}).items()
    }
    labels |= {
        f"__meta_kubernetes_pod_annotation_{clean(k)}": v
        for k, v in meta.get("annotations", {}).items()
    }
    return labels | {"__meta_kubernetes_pod_node_name": node, "__meta_kubernetes_pod_name": name}


def kubernetes_sd_as_static(
    job: dict[str, Any], targets: list[str], labels: dict[str, str]
) -> dict[str, Any]:
    """`job` with its Kubernetes discovery replaced by static targets carrying `labels`.

    Debian builds Prometheus without Kubernetes discovery; the relabelling that follows it
    is what the scrape config adds, and it runs the same on static targets."""
    out = {k: v for k, v in job.items() if k != "kubernetes_sd_configs"}
    out["static_configs"] = [{"targets": targets, "labels": labels}]
    return out


class PrometheusServer:
    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        assert PROMETHEUS is not None, "prometheus is not installed"
        self.config = config
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "prometheus.log"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PrometheusServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config))
        argv = [
            str(PROMETHEUS),
            f"--config.file={config}",
            f"--storage.tsdb.path={self.workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(self._ready, 30, step=0.1)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the server we started, by its PID (SIGTERM, then SIGKILL)."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def _ready(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise AssertionError(f"prometheus exited: {self.log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError):
            return False

    def api(self, path: str, **params: str | list[str]) -> Any:
        """GET /api/v1/<path>; the `data` of a successful answer."""
        query = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as err:
            body = json.load(err)
        if body.get("status") != "success":
            raise PromQLError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; the result as a list of {metric, value} or {metric, values}
        (a scalar as one)."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]
