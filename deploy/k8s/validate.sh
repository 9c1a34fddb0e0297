#!/usr/bin/env bash
# Offline validation of the Kubernetes base (deploy/k8s), no cluster and no
# kubectl needed: validate.py renders kustomization.yaml (plain resource
# files plus the secretGenerator), validates every object strictly against
# the Kubernetes JSON schemas bundled in the PyPI package kubernetes-validate
# (pinned in deploy/requirements-dev.txt), and checks probes, PDBs, HPAs,
# secrets, INSTANCE_ID and the gateway's upstreams. When nginx is on PATH it
# also syntax-checks the gateway's nginx.conf (nginx -t).
#
#   deploy/k8s/validate.sh              # what ./dev test runs
#   deploy/k8s/validate.sh -v           # list every check
#   deploy/k8s/validate.sh --require-secret-files   # before a real apply
#   K8S_VERSIONS="1.30.0 1.33.0" deploy/k8s/validate.sh
#
# Python: the project's .venv (as ./dev makes it), or $VENV; kubernetes-validate
# is installed into it from deploy/requirements-dev.txt if it is missing or
# another version.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VENV=${VENV:-$ROOT/.venv}
REQ="$ROOT/deploy/requirements-dev.txt"

pin=$(grep -E '^kubernetes-validate==' "$REQ" | head -n 1) || {
  echo "validate.sh: no kubernetes-validate==VERSION line in $REQ" >&2
  exit 2
}
want=${pin#kubernetes-validate==}

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
have=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("kubernetes-validate"))' 2>/dev/null || true)
if [ "$have" != "$want" ]; then
  echo "installing $pin into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "$pin"
fi

args=()
for v in ${K8S_VERSIONS:-}; do args+=(--kubernetes-version "$v"); done
"$VENV/bin/python" "$HERE/validate.py" ${args[@]+"${args[@]}"} "$@"

# The gateway's nginx.conf as nginx parses it, when nginx is here (./dev
# installs it): a copy with the Service names mapped to 127.0.0.1 (no
# cluster DNS here) and /tmp to a scratch folder, beside the header files
# the image has in /etc/nginx.
if command -v nginx >/dev/null; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$VENV/bin/python" - "$HERE/gateway-nginx.yaml" >"$tmp/nginx.conf" <<'PY'
import sys, yaml
print(yaml.safe_load(open(sys.argv[1]))["data"]["nginx.conf"], end="")
PY
  sed -i -E "s/server (auth-svc|chat-svc|notify-svc):/server 127.0.0.1:/; s#/tmp/#$tmp/#g" "$tmp/nginx.conf"
  cp "$ROOT/deploy/security-headers.conf" "$ROOT/deploy/api-headers.conf" "$tmp/"
  if ! out=$(nginx -t -q -c "$tmp/nginx.conf" -p "$tmp/" -g "error_log $tmp/error.log;" 2>&1); then
    echo "FAILED: the gateway's nginx.conf (deploy/k8s/gateway-nginx.yaml) does not pass nginx -t:" >&2
    echo "$out" >&2
    exit 1
  fi
  echo "deploy/k8s: the gateway's nginx.conf passes nginx -t ($(nginx -v 2>&1 | sed 's/^nginx version: //'))"
fi
