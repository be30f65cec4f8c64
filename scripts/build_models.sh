#!/usr/bin/env bash
# Fetches and converts the edge models (filled in by the edge pipeline work).
set -euo pipefail
mkdir -p var/models
