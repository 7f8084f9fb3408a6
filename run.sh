#!/usr/bin/env bash
# Quick start: set up (first time only) and run the default pipeline, or `./run.sh validate`,
# `./run.sh graph`, ...: any `edgewax` command. With no arguments: `edgewax run pipelines.yaml`.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh ""
if [ $# -eq 0 ]; then set -- run pipelines.yaml; fi
exec edgewax "$@"
