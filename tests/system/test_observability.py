"""A real Prometheus (Debian's /usr/bin/prometheus) against the private stack:
the jobs of deploy/prometheus/prometheus.yml pointed at the stack's ports,
the rules of deploy/prometheus/alerts.yml, and every query of the Grafana
dashboard deploy/grafana/chat-backend.json. After a little real traffic each
query must find at least one series, and every metric an alert names must
exist: a renamed or misspelt metric fails here, not on an operator's screen."""

from __future__ import annotations

import http.server
import json
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
import yaml

from conftest import PASSWORD, ROOT, Client, Stack, eventually, known_to_chat, push_subscription, register, unique

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "chat-backend.json"
RUNBOOK = ROOT / "docs" / "runbook.md"
SERVICES = ("auth-svc", "chat-svc", "notify-svc")

# What Grafana would put in place of the dashboard's variables.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "${service}": ".+", "$service": ".+"}

# Words of PromQL that are not metric names (functions are told by their "(").
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset", "bool", "inf", "nan"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host_port(base: str) -> str:
    url = urlparse(base)
    return f"{url.hostname}:{url.port}"


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (enough for our rules and
    panels: strings, label matchers and grouping lists are cut out first)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\boffset\s+\w+", "", expr)
    names = re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expr)
    return {n for n in names if n.lower() not in PROMQL_WORDS and not re.fullmatch(r"\d+\w*", n)}


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL with the Grafana variables replaced) of every target."""
    dashboard = json.loads(DASHBOARD.read_text())
    panels = []
    for panel in dashboard["panels"]:
        panels += [panel, *panel.get("panels", [])]
    queries = []
    for panel in panels:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"panel {panel['title']!r} uses a variable this test does not know: {expr}"
            queries.append((f"{panel['title']} [{target['refId']}]", expr))
    assert len(queries) >= 20, f"the dashboard has only {len(queries)} queries"
    return queries


def scrape_config(stack: Stack) -> dict:
    """prometheus.yml's service jobs, each pointed at the private stack's
    instance instead of compose's DNS names, scraped every second."""
    deployed = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    addresses = {"auth-svc": stack.auth, "chat-svc": stack.chat, "notify-svc": stack.notify}
    jobs = [
        {
            "job_name": job["job_name"],
            "metrics_path": job.get("metrics_path", "/metrics"),
            "static_configs": [{"targets": [host_port(addresses[job["job_name"]])]}],
        }
        for job in deployed["scrape_configs"]
        if job["job_name"] in addresses
    ]
    assert sorted(j["job_name"] for j in jobs) == sorted(SERVICES), "prometheus.yml must have one job per service, named after it"
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": jobs,
    }


class Prometheus:
    def __init__(self, base: str) -> None:
        self.base = base

    def api(self, path: str, **params) -> dict:
        r = requests.get(f"{self.base}/api/v1/{path}", params=params, timeout=10)
        body = r.json()
        assert r.status_code == 200 and body["status"] == "success", f"{path} {params}: {r.status_code} {body}"
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]


@pytest.fixture(scope="module")
def prometheus(stack: Stack, tmp_path_factory) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    assert Path(binary).exists(), "no prometheus binary: ./dev installs Debian's prometheus package"
    work = tmp_path_factory.mktemp("prometheus")
    config = work / "prometheus.yml"
    config.write_text(json.dumps(scrape_config(stack), indent=2))  # JSON is YAML
    port = free_port()
    log = (work / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={work / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        def ready():
            assert proc.poll() is None, f"prometheus exited with {proc.returncode}:\n{(work / 'prometheus.log').read_text()}"
            return requests.get(f"{base}/-/ready", timeout=2).status_code == 200
        eventually(ready, timeout=60, interval=0.5, what="Prometheus ready")
        yield Prometheus(base)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


class PushHandler(http.server.BaseHTTPRequestHandler):
    """Accepts every push (201), as a browser vendor's push service would."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received += 1
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


class PushService(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        self.received = 0
        super().__init__(("127.0.0.1", 0), PushHandler)


@pytest.fixture
def push_service() -> Iterator[PushService]:
    server = PushService()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def drive_traffic(stack: Stack, push: PushService) -> None:
    """Registration and login, a push subscription, a message posted while a
    socket is open, reads served by the cache: what every panel shows."""
    alice = register(stack)
    bob = register(stack)
    login = Client(stack.gateway).post("/api/auth/login", json={"login": alice.username, "password": PASSWORD})
    assert login.status_code == 200, login.text
    endpoint = f"http://127.0.0.1:{push.server_address[1]}/push/{unique()}"
    sub = bob.client().post("/api/notifications/push-subscriptions", json=push_subscription(endpoint))
    assert sub.status_code == 201, sub.text
    known_to_chat(stack, alice, bob)
    chat = alice.client().post("/api/chat", json={"userId": bob.id})
    assert chat.status_code in (200, 201), chat.text
    chat_id = chat.json()["id"]
    with alice.socket():
        sent = alice.client().post(f"/api/chat/{chat_id}/messages", json={"content": "hello, metrics"})
        assert sent.status_code == 201, sent.text
        for _ in range(2):  # the second read of each is a cache hit
            assert alice.client().get("/api/chat").status_code == 200
            assert alice.client().get(f"/api/chat/{chat_id}/messages").status_code == 200
        eventually(lambda: push.received >= 1, timeout=30, what="bob's push")
    # Nothing may push to this endpoint once its server is gone (a refused
    # push would be retried, then dead-lettered, under the next tests).
    assert bob.client().delete(f"/api/notifications/push-subscriptions/{sub.json()['id']}").status_code == 204


def test_prometheus_scrapes_the_stack_and_every_dashboard_query_finds_series(stack: Stack, prometheus: Prometheus, push_service: PushService):
    drive_traffic(stack, push_service)

    def all_targets_up():
        targets = prometheus.api("targets")["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets}
        assert sorted(health) == sorted(SERVICES), health
        return all(h == "up" for h in health.values()) and health
    eventually(all_targets_up, timeout=30, interval=0.5, what="every target up")

    # The rule file loaded whole, and every rule evaluates without error.
    expected = sorted(rule["alert"] for rule in alert_rules())

    def rules_evaluated():
        groups = prometheus.api("rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        assert sorted(r["name"] for r in rules) == expected, [r["name"] for r in rules]
        return all(r["health"] != "unknown" for r in rules) and rules
    rules = eventually(rules_evaluated, timeout=30, interval=0.5, what="every rule evaluated")
    broken = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not broken, f"rules that fail to evaluate: {broken}"

    # Every metric an alert or a panel names exists in what was scraped.
    known = set(prometheus.api("label/__name__/values"))
    used = {name: f"alert {rule['alert']}" for rule in alert_rules() for name in metric_names(rule["expr"])}
    used |= {name: f"panel {title}" for title, expr in panel_queries() for name in metric_names(expr)}
    assert len(used) >= 12, sorted(used)
    unknown = {name: where for name, where in used.items() if name not in known}
    assert not unknown, f"metrics that no service exports: {unknown}"

    # Every panel query returns at least one series. A counter born late
    # needs two scrapes inside the range before rate() has a value: retry.
    missing = dict(panel_queries())
    deadline = time.monotonic() + 30
    while missing and time.monotonic() < deadline:
        missing = {title: expr for title, expr in missing.items() if not prometheus.query(expr)}
        if missing:
            time.sleep(1)
    assert not missing, "dashboard queries with no series:\n" + "\n".join(f"  {t}: {e}" for t, e in missing.items())

    alerts = prometheus.api("alerts")["alerts"]
    print(f"\n{len(panel_queries())} panel queries answered; {len(rules)} rules ok; alerts pending or firing: "
          f"{[(a['labels']['alertname'], a['state']) for a in alerts] or 'none'}")


def test_every_alert_has_its_annotations_and_a_runbook_section():
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", RUNBOOK.read_text(), re.M)
    }
    for rule in alert_rules():
        annotations = rule.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), rule["alert"]
        url = annotations.get("runbook_url", "")
        assert url.startswith("docs/runbook.md#"), f"{rule['alert']}: runbook_url {url!r}"
        assert url.split("#", 1)[1] in anchors, f"{rule['alert']}: docs/runbook.md has no section #{url.split('#', 1)[1]}"
        assert rule.get("labels", {}).get("severity") in ("warning", "critical"), rule["alert"]
