#!/usr/bin/env bash
# Makes Fashion-MNIST available to ninr: the ninr loader looks in NINR_DATA_DIR, the Debian
# package's directory, the user cache, and finally downloads the official files. Where none of
# those works and we are root on Debian, install the Debian package `dataset-fashion-mnist`.
set -euo pipefail
PY=${1:-python3}
if "$PY" -m ninr data fetch; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "fetch-data: installing the Debian package dataset-fashion-mnist" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist
  "$PY" -m ninr data fetch
else
  exit 1
fi
