#!/usr/bin/env bash
# The test suite: sets up (venv, dev tools, system packages) and runs lint, types and tests.
# Extra arguments go to pytest, e.g. `./test.sh -k config -x`.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh "dev,camera,mqtt"
# Real peers for the tests: an MQTT broker and a Prometheus server (started by fixtures).
apt_install mosquitto prometheus

echo "== ruff" >&2
ruff check .
echo "== mypy" >&2
mypy
echo "== node reference is current" >&2
edgewax docs --output docs/nodes.md --check
echo "== pytest" >&2
set +e
python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "test.sh: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
