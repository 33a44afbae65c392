#!/usr/bin/env bash
# Create .venv and install tlsweep with its pinned dependencies. Idempotent: reinstalls only when
# pyproject.toml changed. Set PYTHON to choose the interpreter (3.11+).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "tlsweep needs Python 3.11+ ($PY is older)" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.tlsweep-installed
want=$(sha256sum pyproject.toml | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing tlsweep and its dependencies into .venv (torch is large: a few minutes the first time)"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]' 2> >(grep -v "is ignored: it is neither" >&2)
  echo "$want" > "$stamp"
fi
