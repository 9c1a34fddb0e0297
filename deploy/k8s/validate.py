#!/usr/bin/env python3
"""Offline checks of the Kubernetes base in deploy/k8s (run by validate.sh).

1. Renders the kustomization the way `kustomize build` would for the
   features it uses, and only those: plain `resources` files and a
   `secretGenerator` of files. Any other kustomize feature is refused here,
   since a renderer that ignored it would validate something else than what
   gets applied.
2. Validates every object against the Kubernetes JSON schemas of
   kubernetes-validate, strictly (an unknown field fails), for each
   Kubernetes version asked for.
3. Checks what the schemas cannot: every Deployment has both probes on its
   service's port, a Service, a PodDisruptionBudget, non-root and read-only
   settings, resources, a termination grace that covers the drain, topology
   spread; chat-svc and notify-svc have a CPU HorizontalPodAutoscaler;
   every referenced ConfigMap, Secret and key exists; the secret files are
   readable by uid 10001; nothing sets INSTANCE_ID; the gateway's nginx
   reaches the services by their Service names only.

Exit status 0 when everything holds, 1 otherwise (every problem is listed).
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import os
import re
import sys

import yaml
import kubernetes_validate
from kubernetes_validate import SchemaNotFoundError, ValidationError

HERE = os.path.dirname(os.path.abspath(__file__))
APP_UID = 10001
# The Deployments that must have a HorizontalPodAutoscaler.
AUTOSCALED = ("chat-svc", "notify-svc")
# The services' drain after SIGTERM when SHUTDOWN_TIMEOUT_SECS is unset
# (shared/src/config.rs).
DEFAULT_SHUTDOWN_TIMEOUT_SECS = 20
# What the grace must leave beyond the preStop pause and the drain: the
# background tasks finishing the work in hand.
GRACE_MARGIN_SECS = 10
KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "secretGenerator"}
GENERATOR_KEYS = {"name", "files", "options", "type"}
GENERATOR_OPTION_KEYS = {"labels", "annotations"}

errors: list[str] = []
passed: list[str] = []


def fail(msg: str) -> None:
    errors.append(msg)


def check(ok: bool, what: str, problem: str) -> bool:
    """Records `what` as passed, or `problem` as an error."""
    if ok:
        passed.append(what)
    else:
        fail(problem)
    return ok


class StrictLoader(yaml.SafeLoader):
    """Refuses duplicate keys, as kustomize and kubectl do (PyYAML would keep
    the last one silently)."""


def _mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_all(path: str) -> list:
    with open(path, encoding="utf-8") as f:
        try:
            return [d for d in yaml.load_all(f, Loader=StrictLoader) if d is not None]
        except yaml.YAMLError as e:
            fail(f"{rel(path)}: not valid YAML: {e}")
            return []


def rel(path: str) -> str:
    return os.path.relpath(path, os.path.dirname(os.path.dirname(HERE)))


def kn(obj: dict) -> str:
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


# --- 1. rendering ---------------------------------------------------------

PLACEHOLDER = "placeholder: the operator provides this file\n"


def check_secret_file(key: str, path: str, text: str) -> None:
    """Sanity of an operator's file that is present (what the services would
    refuse at start)."""
    first = text.strip()
    name = rel(path)
    if key.endswith(".pem"):
        check("-----BEGIN " in first, f"{name} is PEM", f"{name}: not a PEM file")
    elif key == "totp-encryption.key":
        try:
            ok = len(base64.b64decode(first, validate=True)) == 32
        except ValueError:
            ok = False
        check(ok, f"{name} is a base64 32-byte key", f"{name}: not base64 of 32 bytes")
    elif key == "mongodb-uri":
        check(re.match(r"mongodb(\+srv)?://", first) is not None, f"{name} scheme",
              f"{name}: must start with mongodb:// or mongodb+srv://")
    elif key == "redis-url":
        check(first.startswith("redis://"), f"{name} scheme",
              f"{name}: must start with redis:// (rediss:// is refused: no TLS in this build)")
    elif key == "amqp-url":
        check(all(u.strip().startswith("amqp://") for u in first.split(",")), f"{name} scheme",
              f"{name}: every node must start with amqp:// (amqps:// is refused: no TLS in this build)")
    elif key == "smtp-url":
        check(re.match(r"smtps?://", first) is not None, f"{name} scheme",
              f"{name}: must start with smtp:// or smtps://")
    if "\n" in text.rstrip("\r\n") and not key.endswith(".pem"):
        fail(f"{name}: must be one line")


def render(kustomization: str, provided_only: bool) -> list[tuple[str, dict]]:
    """The objects `kustomize build` would produce, each with where it came from."""
    docs = load_all(kustomization)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        fail(f"{rel(kustomization)}: must be one YAML mapping")
        return []
    k = docs[0]
    check(k.get("apiVersion") == "kustomize.config.k8s.io/v1beta1" and k.get("kind") == "Kustomization",
          "kustomization.yaml is a Kustomization",
          f"{rel(kustomization)}: apiVersion/kind must be kustomize.config.k8s.io/v1beta1 Kustomization")
    unknown = sorted(set(k) - KUSTOMIZATION_KEYS)
    check(not unknown, "kustomization.yaml uses only resources and secretGenerator",
          f"{rel(kustomization)}: {unknown} not supported by this validator's renderer "
          f"(keep the base to {sorted(KUSTOMIZATION_KEYS - {'apiVersion', 'kind'})}; put the rest in an overlay)")
    objects: list[tuple[str, dict]] = []
    root = os.path.dirname(kustomization)
    resources = k.get("resources") or []
    check(bool(resources), "kustomization.yaml lists resources", f"{rel(kustomization)}: no resources")
    seen_files = set()
    for entry in resources:
        path = os.path.normpath(os.path.join(root, str(entry)))
        if not isinstance(entry, str) or "://" in entry or not path.startswith(root + os.sep):
            fail(f"{rel(kustomization)}: resource {entry!r} must be a file inside deploy/k8s")
            continue
        if not check(os.path.isfile(path), f"resource {entry} exists",
                     f"{rel(kustomization)}: resource {entry!r} does not exist (or is a directory)"):
            continue
        if path in seen_files:
            fail(f"{rel(kustomization)}: resource {entry!r} listed twice")
        seen_files.add(path)
        for doc in load_all(path):
            if not isinstance(doc, dict):
                fail(f"{rel(path)}: a document that is not a mapping")
                continue
            objects.append((rel(path), doc))
    readme_path = os.path.join(root, "secrets", "README.md")
    readme = open(readme_path, encoding="utf-8").read() if os.path.isfile(readme_path) else ""
    missing = []
    for gen in k.get("secretGenerator") or []:
        extra = sorted(set(gen) - GENERATOR_KEYS)
        if extra:
            fail(f"{rel(kustomization)}: secretGenerator {gen.get('name')}: {extra} not supported here")
        options = gen.get("options") or {}
        if set(options) - GENERATOR_OPTION_KEYS:
            fail(f"{rel(kustomization)}: secretGenerator {gen.get('name')}: options "
                 f"{sorted(set(options) - GENERATOR_OPTION_KEYS)} not supported here")
        data = {}
        for entry in gen.get("files") or []:
            key, _, path = str(entry).rpartition("=")
            key = key or os.path.basename(path)
            full = os.path.normpath(os.path.join(root, path))
            if not full.startswith(root + os.sep):
                fail(f"{rel(kustomization)}: {entry!r}: kustomize only reads files inside the base")
                continue
            if key in data:
                fail(f"{rel(kustomization)}: secretGenerator {gen.get('name')}: key {key} twice")
            check(f"`{os.path.basename(path)}`" in readme, f"{path} documented",
                  f"{rel(readme_path)}: does not document {os.path.basename(path)}")
            if os.path.isfile(full):
                text = open(full, encoding="utf-8").read()
                check_secret_file(key, full, text)
            else:
                missing.append(path)
                text = PLACEHOLDER
            data[key] = base64.b64encode(text.encode()).decode()
        meta = {"name": gen.get("name")}
        if options.get("labels"):
            meta["labels"] = dict(options["labels"])
        if options.get("annotations"):
            meta["annotations"] = dict(options["annotations"])
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": meta,
                  "type": gen.get("type", "Opaque"), "data": data}
        objects.append((f"{rel(kustomization)} secretGenerator", secret))
    if missing:
        files = sorted(set(missing))
        if provided_only:
            fail(f"secret files not provided (kustomize would refuse to build): {', '.join(files)}")
        else:
            print(f"note: {len(files)} secret files are not provided here (the operator's, "
                  f"see deploy/k8s/secrets/README.md); rendered with placeholders")
    return objects


# --- 2. schemas -----------------------------------------------------------

def validate_schemas(objects: list[tuple[str, dict]], versions: list[str]) -> None:
    seen = {}
    for source, obj in objects:
        name = kn(obj)
        if name in seen:
            fail(f"{source}: {name} is also defined in {seen[name]}")
        seen[name] = source
        meta = obj.get("metadata") or {}
        check("namespace" not in meta, f"{name} has no namespace",
              f"{source}: {name}: sets metadata.namespace (the base is namespace-agnostic; "
              f"set `namespace:` in an overlay)")
        for version in versions:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
                passed.append(f"{name} schema {version}")
            except ValidationError as e:
                path = ".".join(str(p) for p in e.path) or "(top)"
                fail(f"{source}: {name}: {path}: {e.message} (Kubernetes {version}, strict)")
            except SchemaNotFoundError as e:
                fail(f"{source}: {name}: {e.message}")


# --- 3. cross-checks ------------------------------------------------------

def subset(small: dict, big: dict) -> bool:
    return bool(small) and all(big.get(k) == v for k, v in small.items())


def container_port(c: dict, port) -> int | None:
    for p in c.get("ports") or []:
        if port == p.get("name") or port == p.get("containerPort"):
            return p.get("containerPort")
    return None


def prestop_sleep(c: dict) -> int:
    cmd = (((c.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command") or []
    if len(cmd) >= 2 and os.path.basename(cmd[0]) == "sleep":
        return int(float(cmd[1]))
    m = re.match(r"\s*sleep\s+(\d+)", cmd[-1]) if cmd else None
    return int(m.group(1)) if m else 0


def env_of(c: dict, configmaps: dict, where: str) -> dict:
    """The container's environment as far as the manifests set it."""
    env = {}
    for src in c.get("envFrom") or []:
        ref = src.get("configMapRef") or src.get("secretRef") or {}
        if "configMapRef" in src:
            if check(ref.get("name") in configmaps, f"{where} envFrom {ref.get('name')} exists",
                     f"{where}: envFrom ConfigMap {ref.get('name')!r} is not defined"):
                env.update({(src.get("prefix") or "") + k: v for k, v in configmaps[ref["name"]].items()})
        else:
            fail(f"{where}: envFrom a Secret puts credentials in the environment; mount files (*_FILE)")
    for e in c.get("env") or []:
        if "valueFrom" in e:
            ref = e["valueFrom"].get("configMapKeyRef")
            if ref:
                check(ref.get("key") in configmaps.get(ref.get("name"), {}), f"{where} {e['name']} ref",
                      f"{where}: env {e['name']}: ConfigMap key {ref.get('name')}/{ref.get('key')} is not defined")
            env[e["name"]] = None
        else:
            env[e["name"]] = e.get("value", "")
    return env


def check_nginx(conf: str, where: str, services: dict, gateway: dict) -> int | None:
    """The gateway's upstreams are Service names with their ports, never
    addresses; returns worker_shutdown_timeout in seconds."""
    upstreams = {}
    for name, body in re.findall(r"upstream\s+(\S+)\s*\{([^}]*)\}", conf):
        servers = re.findall(r"(?:^|[;{\s])server\s+([^\s;]+)", body)
        upstreams[name] = servers
        check(bool(servers), f"{where} upstream {name} has a server", f"{where}: upstream {name} has no server")
        for server in servers:
            host, sep, port = server.rpartition(":")
            if not sep or not port.isdigit():
                host, port = server, ""
            host = host.strip("[]")
            try:
                ipaddress.ip_address(host)
                fail(f"{where}: upstream {name}: {server} is an address; use the Kubernetes Service name")
                continue
            except ValueError:
                pass
            svc_name = host.split(".")[0]
            svc = services.get(svc_name)
            if not check(svc is not None and (host == svc_name or ".svc" in host),
                         f"{where} upstream {name} -> Service {svc_name}",
                         f"{where}: upstream {name}: {server} is not one of the Services {sorted(services)}"):
                continue
            ports = [p.get("port") for p in svc["spec"].get("ports") or []]
            check(port.isdigit() and int(port) in ports, f"{where} upstream {name} port",
                  f"{where}: upstream {name}: port {port or '(none)'} is not a port of Service {svc_name} {ports}")
    for target in re.findall(r"proxy_pass\s+https?://([^/;\s]+)", conf):
        check(target in upstreams, f"{where} proxy_pass {target}",
              f"{where}: proxy_pass to {target}, which is no upstream (would be resolved per host name)")
    c = gateway
    listens = {int(p) for p in re.findall(r"listen\s+(?:[\d.]+:)?(\d+)", conf)}
    for p in c.get("ports") or []:
        check(p.get("containerPort") in listens, f"{where} listens on {p.get('containerPort')}",
              f"{where}: nothing listens on containerPort {p.get('containerPort')} ({p.get('name')})")
    for probe, path in (("readinessProbe", "/health/ready"), ("livenessProbe", "/health/live")):
        check(re.search(r"location\s+=?\s*" + re.escape(path) + r"\s*\{", conf) is not None,
              f"{where} serves {path}", f"{where}: no location for the gateway's {probe} path {path}")
    m = re.search(r"worker_shutdown_timeout\s+(\d+)s?\s*;", conf)
    check(m is not None, f"{where} bounds its graceful stop",
          f"{where}: no worker_shutdown_timeout: open WebSockets would hold a stop until the grace kills nginx")
    check(re.search(r"^\s*pid\s+/tmp/", conf, re.M) is not None, f"{where} pid in /tmp",
          f"{where}: the pid file must be in /tmp (read-only root file system)")
    return int(m.group(1)) if m else None


def check_deployment(d: dict, source: str, by_kind: dict) -> None:
    name = d["metadata"]["name"]
    where = f"{source}: Deployment/{name}"
    spec = d.get("spec") or {}
    tpl = spec.get("template") or {}
    pod = tpl.get("spec") or {}
    labels = (tpl.get("metadata") or {}).get("labels") or {}
    selector = spec.get("selector") or {}
    check("matchExpressions" not in selector and subset(selector.get("matchLabels") or {}, labels),
          f"{name} selector matches its pods",
          f"{where}: spec.selector.matchLabels must be a non-empty subset of the pod labels")
    configmaps = {o["metadata"]["name"]: o.get("data") or {} for o in by_kind.get("ConfigMap", [])}
    secrets = {o["metadata"]["name"]: o.get("data") or {} for o in by_kind.get("Secret", [])}

    # Security context.
    psc = pod.get("securityContext") or {}
    check(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == APP_UID,
          f"{name} runs as uid {APP_UID}", f"{where}: pod must set runAsNonRoot: true and runAsUser: {APP_UID}")
    check(pod.get("automountServiceAccountToken") is False, f"{name} no API token",
          f"{where}: automountServiceAccountToken: false (the services never call the API)")

    # Spread.
    spread = pod.get("topologySpreadConstraints") or []
    anti = ((pod.get("affinity") or {}).get("podAntiAffinity"))
    check(bool(spread) or bool(anti), f"{name} spreads its replicas",
          f"{where}: needs topologySpreadConstraints or podAntiAffinity")
    for t in spread:
        check(subset(((t.get("labelSelector") or {}).get("matchLabels") or {}), labels),
              f"{name} spread selects its own pods",
              f"{where}: a topologySpreadConstraint's labelSelector does not select this Deployment's pods")

    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    grace = pod.get("terminationGracePeriodSeconds")
    containers = pod.get("containers") or []
    check(bool(containers), f"{name} has containers", f"{where}: no containers")
    for c in containers:
        cw = f"{where} container {c.get('name')}"
        image = c.get("image", "")
        check(re.match(r"^[a-z0-9.-]+\.[a-z]+(:\d+)?/[a-z0-9._/-]+(:[\w.-]+|@sha256:[0-9a-f]{64})$", image)
              is not None and not image.endswith(":latest"),
              f"{name} image has a registry and a tag",
              f"{cw}: image {image!r} needs registry/name:tag (not :latest) for kustomize `images:` to pin")
        csc = c.get("securityContext") or {}
        check(csc.get("readOnlyRootFilesystem") is True and csc.get("allowPrivilegeEscalation") is False
              and "ALL" in ((csc.get("capabilities") or {}).get("drop") or [])
              and csc.get("runAsUser", APP_UID) == APP_UID,
              f"{name} container locked down",
              f"{cw}: needs readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities.drop [ALL]")
        res = c.get("resources") or {}
        check(all(k in (res.get(kind) or {}) for kind in ("requests", "limits") for k in ("cpu", "memory")),
              f"{name} has requests and limits", f"{cw}: needs cpu and memory requests and limits")

        env = env_of(c, configmaps, cw)
        # INSTANCE_ID must stay each replica's own (shared/src/config.rs).
        check("INSTANCE_ID" not in env, f"{name} leaves INSTANCE_ID alone",
              f"{cw}: sets INSTANCE_ID; replicas would share one id (fan-out queue, presence, leases)")
        service_port = env.get("HTTP_PORT")

        # Probes.
        for probe, path in (("readinessProbe", "/health/ready"), ("livenessProbe", "/health/live")):
            http = (c.get(probe) or {}).get("httpGet") or {}
            if not check(http.get("path") == path, f"{name} {probe}",
                         f"{cw}: {probe} must be httpGet {path}"):
                continue
            port = container_port(c, http.get("port"))
            check(port is not None, f"{name} {probe} port is a container port",
                  f"{cw}: {probe} port {http.get('port')!r} is not one of the container's ports")
            if service_port is not None and port is not None:
                check(str(port) == str(service_port), f"{name} {probe} on HTTP_PORT",
                      f"{cw}: {probe} on port {port}, but the service listens on HTTP_PORT={service_port}")

        # Mounted files: *_FILE variables point at keys that exist, mounted
        # read-only and readable by the app's uid.
        mounts = {m["mountPath"].rstrip("/"): m for m in c.get("volumeMounts") or []}
        for m in mounts.values():
            v = volumes.get(m["name"])
            if not check(v is not None, f"{name} mount {m['name']}", f"{cw}: mounts unknown volume {m['name']}"):
                continue
            if "secret" in v or "configMap" in v:
                check(m.get("readOnly") is True, f"{name} {m['name']} read-only",
                      f"{cw}: mount {m['name']} must be readOnly: true")
            if "configMap" in v and m.get("subPath"):
                check(m["subPath"] in configmaps.get(v["configMap"].get("name"), {}), f"{name} subPath",
                      f"{cw}: {m['subPath']} is not a key of ConfigMap {v['configMap'].get('name')}")
        for var, value in env.items():
            if not var.endswith("_FILE") or value is None:
                continue
            d_, f_ = os.path.split(value)
            m = mounts.get(d_.rstrip("/"))
            v = volumes.get(m["name"]) if m else None
            src = (v or {}).get("secret")
            if not check(src is not None, f"{name} {var} on a secret volume",
                         f"{cw}: {var}={value} is not in a mounted Secret volume"):
                continue
            keys = {i["path"]: i["key"] for i in src.get("items") or []} or {k: k for k in secrets.get(src["secretName"], {})}
            check(f_ in keys, f"{name} {var} exists",
                  f"{cw}: {var}={value}: Secret {src['secretName']} has no key {f_} (keys: {sorted(keys)})")

        # Termination grace: preStop pause + drain + margin.
        drain, nginx = None, False
        if service_port is not None:
            drain = int(env.get("SHUTDOWN_TIMEOUT_SECS") or DEFAULT_SHUTDOWN_TIMEOUT_SECS)
        for m in mounts.values():
            v = volumes.get(m["name"]) or {}
            conf = configmaps.get((v.get("configMap") or {}).get("name"), {}).get(m.get("subPath") or "nginx.conf")
            if m["mountPath"].endswith("nginx.conf") and conf:
                nginx = True
                drain = check_nginx(conf, f"ConfigMap/{v['configMap']['name']} nginx.conf",
                                    {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}, c)
        if nginx and drain is None:
            pass  # check_nginx has said why
        elif check(drain is not None, f"{name} drain known",
                   f"{cw}: neither HTTP_PORT (a service) nor a mounted nginx.conf (the gateway): unknown drain"):
            need = prestop_sleep(c) + drain + GRACE_MARGIN_SECS
            check(isinstance(grace, int) and grace >= need, f"{name} grace covers the drain",
                  f"{cw}: terminationGracePeriodSeconds {grace} < preStop {prestop_sleep(c)} s + drain {drain} s "
                  f"+ {GRACE_MARGIN_SECS} s margin = {need}")

    # Volumes: Secrets and ConfigMaps exist; secret files readable by the
    # app's uid. Secret files are owned by root; with fsGroup they belong
    # to that group, so the group read bit is what lets uid 10001 in.
    for v in volumes.values():
        if "secret" in v:
            s = v["secret"]
            if not check(s.get("secretName") in secrets, f"{name} secret {s.get('secretName')} exists",
                         f"{where}: volume {v['name']}: Secret {s.get('secretName')!r} is not defined"):
                continue
            modes = [i.get("mode", s.get("defaultMode", 0o644)) for i in s.get("items") or []] or [s.get("defaultMode", 0o644)]
            for mode in modes:
                group_ok = psc.get("fsGroup") in (psc.get("runAsGroup"), APP_UID) and psc.get("fsGroup") is not None and mode & 0o040
                check(bool(group_ok) and not mode & 0o007, f"{name} secret files readable by {APP_UID} only",
                      f"{where}: volume {v['name']}: mode {mode:#o} with fsGroup {psc.get('fsGroup')}: the files "
                      f"are root's; uid {APP_UID} reads them only through the group bit with fsGroup set "
                      f"(0440 and fsGroup {APP_UID}); no bits for others")
        if "configMap" in v:
            check(v["configMap"].get("name") in configmaps, f"{name} configMap exists",
                  f"{where}: volume {v['name']}: ConfigMap {v['configMap'].get('name')!r} is not defined")

    # A Service, a PodDisruptionBudget, and for some an autoscaler.
    svcs = [s for s in by_kind.get("Service", []) if subset((s.get("spec") or {}).get("selector") or {}, labels)]
    if check(bool(svcs), f"{name} has a Service", f"{where}: no Service selects its pods"):
        for s in svcs:
            for p in s["spec"].get("ports") or []:
                check(any(container_port(c, p.get("targetPort", p.get("port"))) for c in containers),
                      f"Service/{s['metadata']['name']} targets a container port",
                      f"Service/{s['metadata']['name']}: targetPort {p.get('targetPort')} is no container port of {name}")
    hpas = [h for h in by_kind.get("HorizontalPodAutoscaler", [])
            if (h["spec"].get("scaleTargetRef") or {}).get("name") == name]
    replicas = spec.get("replicas")
    floor = min([h["spec"].get("minReplicas", 1) for h in hpas] or [replicas if replicas is not None else 1])
    pdbs = [p for p in by_kind.get("PodDisruptionBudget", [])
            if subset(((p.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}, labels)]
    if check(len(pdbs) == 1, f"{name} has one PodDisruptionBudget",
             f"{where}: needs exactly one PodDisruptionBudget selecting its pods (found {len(pdbs)})"):
        p = pdbs[0]["spec"]
        ok = ("minAvailable" in p) != ("maxUnavailable" in p)
        if isinstance(p.get("minAvailable"), int):
            ok = ok and p["minAvailable"] < floor
        check(ok, f"{name} PDB lets a node drain",
              f"{where}: its PDB needs minAvailable (below the {floor} replicas) or maxUnavailable, not both")
    if name in AUTOSCALED:
        if check(len(hpas) == 1, f"{name} has a HorizontalPodAutoscaler",
                 f"{where}: needs a HorizontalPodAutoscaler (autoscaling/v2) targeting it"):
            h = hpas[0]
            ref = h["spec"]["scaleTargetRef"]
            check(h["apiVersion"] == "autoscaling/v2" and ref.get("kind") == "Deployment"
                  and ref.get("apiVersion") == "apps/v1", f"{name} HPA is autoscaling/v2 on apps/v1",
                  f"HorizontalPodAutoscaler/{h['metadata']['name']}: must be autoscaling/v2 targeting apps/v1 Deployment")
            check(any(m.get("type") == "Resource" and (m.get("resource") or {}).get("name") == "cpu"
                      for m in h["spec"].get("metrics") or []),
                  f"{name} HPA on CPU", f"HorizontalPodAutoscaler/{h['metadata']['name']}: needs a cpu Resource metric")
            check(all("cpu" in ((c.get("resources") or {}).get("requests") or {}) for c in containers),
                  f"{name} HPA has CPU requests", f"{where}: CPU utilization needs cpu requests on every container")
    if hpas:
        check(replicas is None, f"{name} leaves replicas to its HPA",
              f"{where}: sets spec.replicas although an HPA scales it (every apply would reset the count)")


def cross_check(objects: list[tuple[str, dict]]) -> None:
    by_kind: dict[str, list[dict]] = {}
    sources = {}
    for source, obj in objects:
        by_kind.setdefault(obj.get("kind"), []).append(obj)
        sources[kn(obj)] = source
    deployments = by_kind.get("Deployment", [])
    names = {d["metadata"]["name"] for d in deployments}
    for expected in ("auth-svc", "chat-svc", "notify-svc", "gateway"):
        check(expected in names, f"Deployment {expected} present", f"no Deployment named {expected}")
    for d in deployments:
        check_deployment(d, sources[kn(d)], by_kind)
    for h in by_kind.get("HorizontalPodAutoscaler", []):
        ref = h["spec"].get("scaleTargetRef") or {}
        check(ref.get("name") in names, f"{kn(h)} targets a Deployment",
              f"{sources[kn(h)]}: {kn(h)} targets {ref.get('kind')}/{ref.get('name')}, which is not defined")
    for s in by_kind.get("Service", []):
        sel = (s.get("spec") or {}).get("selector") or {}
        check(any(subset(sel, (d["spec"]["template"].get("metadata") or {}).get("labels") or {}) for d in deployments),
              f"{kn(s)} selects a Deployment", f"{sources[kn(s)]}: {kn(s)} selects no Deployment's pods")
    for cm in by_kind.get("ConfigMap", []):
        check("INSTANCE_ID" not in (cm.get("data") or {}), f"{kn(cm)} has no INSTANCE_ID",
              f"{sources[kn(cm)]}: {kn(cm)} sets INSTANCE_ID; each replica must derive its own")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubernetes-version", action="append", dest="versions",
                        help="validate against this Kubernetes version (repeatable)")
    parser.add_argument("--require-secret-files", action="store_true",
                        help="fail when an operator's secret file is missing (before a real apply)")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every check that passed")
    args = parser.parse_args()
    versions = args.versions or ["1.29.0", kubernetes_validate.latest_version()]
    kustomization = os.path.join(HERE, "kustomization.yaml")
    objects = render(kustomization, args.require_secret_files)
    validate_schemas(objects, versions)
    schema_errors = len(errors)
    try:
        cross_check(objects)
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        if not schema_errors:
            raise
        fail(f"cross-checks stopped at a malformed object ({type(e).__name__}: {e}); fix the schema errors first")
    for source, obj in objects:
        print(f"  {kn(obj):45} {source}")
    if args.verbose:
        for p in passed:
            print(f"  ok  {p}")
    if errors:
        print(f"FAILED: {len(errors)} problem(s) in deploy/k8s "
              f"(kubernetes-validate {kubernetes_validate.__version__}, strict, Kubernetes {', '.join(versions)}):")
        for e in errors:
            print(f"  - {e}")
        return 1
    print(f"deploy/k8s: {len(objects)} objects valid against Kubernetes {', '.join(versions)} "
          f"(kubernetes-validate {kubernetes_validate.__version__}, strict); {len(passed)} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
