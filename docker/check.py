#!/usr/bin/env python3
"""Offline checks of the deployment files under docker/ (run by `make compose-check`).

- every *.yaml / *.yml parses (multi-document files included);
- every *.json parses; the Grafana dashboard has panels with queries;
- compose.yaml: each bind-mounted ./file exists, each depends_on names a service;
- k8s/: each document has apiVersion/kind/metadata.name, kustomization lists exactly the other files,
  containers have probes/resources/non-root security settings.
Exits non-zero with one line per problem.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent
problems: list[str] = []


def problem(msg: str) -> None:
    problems.append(msg)


def load_yaml_docs(path: Path) -> list:
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as e:
        problem(f"{path.relative_to(ROOT)}: YAML error: {e}")
        return []


def check_all_files() -> int:
    n = 0
    for path in sorted(ROOT.rglob("*")):
        if path.suffix in (".yaml", ".yml"):
            n += 1
            load_yaml_docs(path)
        elif path.suffix == ".json":
            n += 1
            try:
                json.loads(path.read_text())
            except json.JSONDecodeError as e:
                problem(f"{path.relative_to(ROOT)}: JSON error: {e}")
    return n


def check_compose() -> None:
    docs = load_yaml_docs(ROOT / "compose.yaml")
    if not docs:
        problem("compose.yaml: empty")
        return
    compose = docs[0]
    services = compose.get("services", {})
    for name, svc in services.items():
        for vol in svc.get("volumes", []) or []:
            src = vol.split(":", 1)[0] if isinstance(vol, str) else ""
            if src.startswith("./") and not (ROOT / src).exists():
                problem(f"compose.yaml: {name} mounts missing {src}")
        deps = svc.get("depends_on", {}) or {}
        for dep in deps if isinstance(deps, (list, dict)) else []:
            if dep not in services:
                problem(f"compose.yaml: {name} depends on unknown service {dep}")
        build = svc.get("build")
        if isinstance(build, dict):
            ctx = (ROOT / build.get("context", ".")).resolve()
            if not (ctx / build.get("dockerfile", "Dockerfile")).exists():
                problem(f"compose.yaml: {name} dockerfile not found")
    for required in ("payd", "postgres", "redis", "kafka", "rabbitmq", "prometheus", "grafana", "loki",
                     "promtail", "otel-collector", "jaeger", "node-exporter", "nginx"):
        if required not in services:
            problem(f"compose.yaml: service {required} missing")


def check_dashboard() -> None:
    path = ROOT / "grafana/dashboards/payd.json"
    try:
        dash = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        problem(f"dashboard: {e}")
        return
    exprs = [t.get("expr", "") for p in dash.get("panels", []) for t in p.get("targets", [])]
    for metric in ("payd_http_request_duration_seconds_bucket", "payd_http_requests_total", "payd_operations_total",
                   "payd_ledger_batch_size", "payd_ledger_commit_seconds"):
        if not any(metric in e for e in exprs):
            problem(f"dashboard: no panel queries {metric}")
    ids = [p.get("id") for p in dash.get("panels", [])]
    if len(ids) != len(set(ids)):
        problem("dashboard: duplicate panel ids")


def check_k8s() -> None:
    k8s = ROOT / "k8s"
    kust = load_yaml_docs(k8s / "kustomization.yaml")
    listed = set(kust[0].get("resources", [])) if kust else set()
    present = {p.name for p in k8s.glob("*.yaml")} - {"kustomization.yaml"}
    for missing in sorted(present - listed):
        problem(f"k8s/kustomization.yaml: {missing} not listed")
    for extra in sorted(listed - present):
        problem(f"k8s/kustomization.yaml: lists missing {extra}")
    kinds = set()
    for name in sorted(present):
        for doc in load_yaml_docs(k8s / name):
            where = f"k8s/{name}"
            for key in ("apiVersion", "kind"):
                if key not in doc:
                    problem(f"{where}: no {key}")
            if not doc.get("metadata", {}).get("name"):
                problem(f"{where}: no metadata.name")
            kind = doc.get("kind")
            kinds.add(kind)
            if kind in ("Deployment", "Job"):
                pod = doc["spec"]["template"]["spec"]
                if not pod.get("securityContext", {}).get("runAsNonRoot"):
                    problem(f"{where}: pod not runAsNonRoot")
                for c in pod.get("containers", []):
                    sc = c.get("securityContext", {})
                    if not sc.get("readOnlyRootFilesystem"):
                        problem(f"{where}: {c['name']} rootfs writable")
                    if not c.get("resources", {}).get("limits"):
                        problem(f"{where}: {c['name']} has no resource limits")
                    if kind == "Deployment":
                        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                            if probe not in c:
                                problem(f"{where}: {c['name']} has no {probe}")
    for kind in ("Namespace", "ConfigMap", "Secret", "Deployment", "Service", "HorizontalPodAutoscaler",
                 "PodDisruptionBudget", "Job"):
        if kind not in kinds:
            problem(f"k8s: no {kind}")


def main() -> int:
    n = check_all_files()
    check_compose()
    check_dashboard()
    check_k8s()
    for p in problems:
        print(f"check.py: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"check.py: {n} YAML/JSON files parse; compose, dashboard and k8s checks ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
