#!/usr/bin/env python3
"""Offline checks of the deployment files under docker/ (run by `make compose-check`).

- every *.yaml / *.yml parses (multi-document files included);
- every *.json parses; the Grafana dashboard has panels with queries;
- compose.yaml: each bind-mounted ./file exists, each depends_on names a service;
- compose.yaml: nginx is the only service published beyond 127.0.0.1, payd runs 3 API replicas and a
  worker, read-only and non-root; nginx resolves payd per request and never serves /metrics;
- prometheus/: every alert rule has a unit test that fires it (promtool runs the tests: make prom-check);
- grafana/: no dashboard query pins a job name; the event-pipeline dashboard covers relay, consumers,
  e-mail and webhooks;
- k8s/: each document has apiVersion/kind/metadata.name, kustomization lists exactly the other files,
  containers have probes/resources/non-root security settings, pods wait for migrations, the shutdown
  bound fits the grace period, and the PostgreSQL connection budget holds at the HPA maximum.
Exits non-zero with one line per problem. `check.py render-k8s` prints the kustomization's resources
as one multi-document YAML stream (for kubernetes-validate where kubectl is not installed).
"""

from __future__ import annotations

import json
import re
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
    for required in ("payd", "payd-worker", "payd-migrate", "postgres", "redis", "kafka", "rabbitmq",
                     "prometheus", "alertmanager", "grafana", "loki", "promtail", "otel-collector", "jaeger",
                     "node-exporter", "postgres-exporter", "redis-exporter", "kafka-exporter", "nginx"):
        if required not in services:
            problem(f"compose.yaml: service {required} missing")
    for name, svc in services.items():
        for port in svc.get("ports", []) or []:
            public = not str(port).startswith("127.0.0.1:")
            if public and name != "nginx":
                problem(f"compose.yaml: {name} publishes {port} beyond 127.0.0.1 (only nginx may)")
        if str(svc.get("image", "")).startswith("payd:"):
            if svc.get("ports"):
                problem(f"compose.yaml: {name} publishes a port (reach payd through nginx)")
            if not svc.get("read_only") or not str(svc.get("user", "")).startswith("10001"):
                problem(f"compose.yaml: {name} must run read_only as user 10001")
    api = services.get("payd", {})
    if (api.get("deploy", {}) or {}).get("replicas", 1) < 3:
        problem("compose.yaml: payd (API) must run 3 replicas")
    for name, role in (("payd", "api"), ("payd-worker", "worker")):
        cmd = services.get(name, {}).get("command", [])
        if cmd[:3] != ["serve", "--role", role]:
            problem(f"compose.yaml: {name} must run `serve --role {role}`")
    nginx = (ROOT / "nginx/nginx.conf").read_text()
    if "resolver 127.0.0.11" not in nginx or "proxy_pass $payd_upstream" not in nginx:
        problem("nginx.conf: payd must be resolved per request (resolver 127.0.0.11 + variable upstream)")
    if "proxy_pass http://payd" in nginx or "upstream payd" in nginx:
        problem("nginx.conf: a static upstream resolves payd only once, at start")
    if "location ^~ /metrics" not in nginx:
        problem("nginx.conf: /metrics must be refused")


def check_alert_tests() -> None:
    rules = load_yaml_docs(ROOT / "prometheus/rules/payd.yml")
    tests = load_yaml_docs(ROOT / "prometheus/tests/payd_test.yml")
    if not rules or not tests:
        problem("prometheus: rules or their tests missing")
        return
    alerts = {r["alert"] for g in rules[0]["groups"] for r in g["rules"] if "alert" in r}
    fired = {a["alertname"] for t in tests[0]["tests"] for a in t.get("alert_rule_test", []) if a.get("exp_alerts")}
    for name in sorted(alerts - fired):
        problem(f"prometheus: alert {name} has no test that fires it")
    text = (ROOT / "prometheus/rules/payd.yml").read_text()
    if 'job="payd"' in text:
        problem("prometheus rules: select payd by service=\"payd\", not a job name")


def dashboard_exprs(name: str) -> list[str]:
    path = ROOT / "grafana/dashboards" / name
    try:
        dash = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        problem(f"dashboard {name}: {e}")
        return []
    ids = [p.get("id") for p in dash.get("panels", [])]
    if len(ids) != len(set(ids)):
        problem(f"dashboard {name}: duplicate panel ids")
    return [t.get("expr", "") for p in dash.get("panels", []) for t in p.get("targets", [])]


def check_dashboard() -> None:
    wanted = {
        "payd.json": ("payd_http_request_duration_seconds_bucket", "payd_http_requests_total", "payd_operations_total",
                      "payd_ledger_batch_size", "payd_ledger_commit_seconds"),
        "payd-events.json": ("payd_events_outbox_depth", "payd_events_outbox_oldest_age_seconds",
                             "payd_events_published_total", "payd_events_publish_failures_total",
                             "payd_events_consumed_total", "payd_dead_letters_total", "payd_emails_total",
                             "payd_webhook_attempts_total", "email_jobs_pending", "webhook_deliveries_pending"),
    }
    for name, metrics in wanted.items():
        exprs = dashboard_exprs(name)
        for metric in metrics:
            if not any(metric in e for e in exprs):
                problem(f"dashboard {name}: no panel queries {metric}")
    for path in sorted((ROOT / "grafana/dashboards").glob("*.json")):
        for e in dashboard_exprs(path.name):
            if re.search(r'job\s*=\s*"[^"$]', e):
                problem(f"dashboard {path.name}: query pins a job name: {e}")


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
                for c in pod.get("initContainers", []) + pod.get("containers", []):
                    sc = c.get("securityContext", {})
                    if not sc.get("readOnlyRootFilesystem"):
                        problem(f"{where}: {c['name']} rootfs writable")
                    if not c.get("resources", {}).get("limits"):
                        problem(f"{where}: {c['name']} has no resource limits")
                for c in pod.get("containers", []):
                    if kind == "Deployment":
                        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                            if probe not in c:
                                problem(f"{where}: {c['name']} has no {probe}")
                if kind == "Deployment":
                    inits = [i.get("args", [])[:2] for i in pod.get("initContainers", [])]
                    if ["migrate", "wait"] not in inits:
                        problem(f"{where}: pods must wait for migrations (init container `payd migrate wait`)")
    for kind in ("Namespace", "ConfigMap", "Secret", "Deployment", "Service", "HorizontalPodAutoscaler",
                 "PodDisruptionBudget", "Job", "CronJob", "Ingress", "NetworkPolicy"):
        if kind not in kinds:
            problem(f"k8s: no {kind}")
    check_k8s_runtime(k8s)


# PostgreSQL's default max_connections and superuser_reserved_connections (docs/operations.md).
PG_MAX_CONNECTIONS = 100
PG_RESERVED = 3


def k8s_doc(path: Path, kind: str) -> dict:
    for doc in load_yaml_docs(path):
        if doc.get("kind") == kind:
            return doc
    problem(f"k8s/{path.name}: no {kind}")
    return {}


def check_k8s_runtime(k8s: Path) -> None:
    """Shutdown bound vs grace period, role per Deployment, Ingress paths, and the connection budget."""
    config = k8s_doc(k8s / "configmap.yaml", "ConfigMap").get("data", {})
    drain = int(config.get("PAYD_SERVER__SHUTDOWN_TIMEOUT_SECS", 20))
    background = int(config.get("PAYD_SERVER__BACKGROUND_STOP_SECS", 5))
    pool = int(config.get("PAYD_DATABASE__POOL_SIZE", 16))
    writers = int(config.get("PAYD_LEDGER__WRITERS", 1))
    budget = []
    for file, role in (("deployment.yaml", "api"), ("worker-deployment.yaml", "worker")):
        dep = k8s_doc(k8s / file, "Deployment")
        if not dep:
            continue
        pod = dep["spec"]["template"]["spec"]
        c = pod["containers"][0]
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        if c.get("args", [])[:3] != ["serve", "--role", role] or env.get("PAYD_SERVER__ROLE") != role:
            problem(f"k8s/{file}: must run `serve --role {role}` with PAYD_SERVER__ROLE={role}")
        pre = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        pre_secs = int(pre[1]) if pre[:1] == ["sleep"] else 0
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if pre_secs + drain + background >= grace:
            problem(f"k8s/{file}: preStop {pre_secs}s + drain {drain}s + background {background}s "
                    f">= terminationGracePeriodSeconds {grace}s")
        # The pool, the ledger writers and the one notification listener (`storage::notified::Listeners`).
        conns = int(env.get("PAYD_DATABASE__POOL_SIZE") or pool) + int(env.get("PAYD_LEDGER__WRITERS") or writers) + 1
        surge = dep["spec"].get("strategy", {}).get("rollingUpdate", {}).get("maxSurge", 1)
        pods = dep["spec"].get("replicas", 1)
        if role == "api":
            hpa = k8s_doc(k8s / "hpa.yaml", "HorizontalPodAutoscaler")
            pods = hpa.get("spec", {}).get("maxReplicas", pods)
        budget.append((f"{file} ({pods} + {surge} surge) x {conns}", (pods + surge) * conns))
    budget.append(("migrate Job", 1))
    budget.append(("verify CronJob", 1))
    budget.append(("postgres-exporter", 1))
    total = sum(n for _, n in budget)
    limit = PG_MAX_CONNECTIONS - PG_RESERVED
    if total > limit:
        problem(f"k8s: connection budget {total} > {limit}: " + ", ".join(f"{w} = {n}" for w, n in budget))
    else:
        print(f"check.py: connection budget {total} <= {limit} (" + ", ".join(f"{w} = {n}" for w, n in budget) + ")")
    ing = k8s_doc(k8s / "ingress.yaml", "Ingress")
    for rule in ing.get("spec", {}).get("rules", []):
        for p in rule.get("http", {}).get("paths", []):
            if p["path"] in ("/", "/metrics") or p["path"].startswith("/metrics"):
                problem(f"k8s/ingress.yaml: path {p['path']} would expose /metrics")


def render_k8s() -> int:
    """The kustomization's resources as one stream (namespace applied), like `kubectl kustomize`."""
    k8s = ROOT / "k8s"
    kust = load_yaml_docs(k8s / "kustomization.yaml")[0]
    docs = []
    for name in kust.get("resources", []):
        for doc in load_yaml_docs(k8s / name):
            if doc.get("kind") != "Namespace":
                doc.setdefault("metadata", {})["namespace"] = kust.get("namespace", "default")
            docs.append(doc)
    sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False))
    return 0


def main() -> int:
    if sys.argv[1:] == ["render-k8s"]:
        return render_k8s()
    n = check_all_files()
    check_compose()
    check_alert_tests()
    check_dashboard()
    check_k8s()
    for p in problems:
        print(f"check.py: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"check.py: {n} YAML/JSON files parse; compose, nginx, alert tests, dashboards and k8s checks ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
