#!/usr/bin/env bash
# Installs everything the test suite needs, idempotently (safe to run on every test run):
#   - Debian's chromium, for the browser test
#   - Debian's nginx-light, wrk and postgresql, whose logs the benchmark ingests
#   - Debian's prometheus (2.42), prometheus-node-exporter and victoria-metrics: the PromQL
#     differential test and the metrics benchmark's baselines
#   - Debian's kubectl: renders the deploy overlays (kubectl kustomize)
#   - a Python virtualenv (.venv) with the OpenTelemetry SDK, moto (S3 test server) and
#     kubernetes-validate
#   - playwright-core (no browser download) for tests/browser
#   - cargo-nextest, the test runner
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ ! -x /usr/bin/chromium ]; then
  echo "setup: installing chromium (Debian package)"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

if [ ! -x /usr/sbin/nginx ] || [ ! -x /usr/bin/wrk ] || ! ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1; then
  echo "setup: installing nginx-light, wrk and postgresql (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends nginx-light wrk postgresql >/dev/null
fi

if [ ! -x /usr/bin/prometheus ] || [ ! -x /usr/bin/prometheus-node-exporter ] || [ ! -x /usr/bin/victoria-metrics ]; then
  echo "setup: installing prometheus, prometheus-node-exporter and victoria-metrics (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  # Only the binaries are used: tests start them on loopback ports of their own.
  as_root apt-get install -y -qq --no-install-recommends prometheus prometheus-node-exporter victoria-metrics >/dev/null
fi

if ! command -v kubectl >/dev/null 2>&1; then
  echo "setup: installing kubectl (Debian package)"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends kubectl >/dev/null
fi

if [ ! -x .venv/bin/python ] || ! cmp -s tests/python/requirements.txt .venv/.loupe-requirements; then
  echo "setup: creating .venv with the Python test tools"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r tests/python/requirements.txt
  cp tests/python/requirements.txt .venv/.loupe-requirements
fi

if [ ! -d tests/browser/node_modules/playwright-core ] \
  || [ tests/browser/package-lock.json -nt tests/browser/node_modules/.package-lock.json ]; then
  echo "setup: installing playwright-core"
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest"
  cargo install cargo-nextest --locked
fi
echo "setup: ok"
