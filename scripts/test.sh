#!/usr/bin/env bash
# The README's test command: install the test extras (and Debian's Chromium for the browser
# tests when it is missing), lint with ruff, then run the whole suite. Extra arguments go to pytest.
# Uses whichever `python` is first on PATH: your activated virtual environment, or the fresh one
# that .ci/run makes.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
if ! command -v chromium >/dev/null 2>&1 && [ -z "${GENLIB_CHROMIUM:-}" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
  else
    echo "The browser tests need Chromium: install it, or set GENLIB_CHROMIUM=/path/to/chromium" >&2
    exit 1
  fi
fi
echo "== lint: ruff $(python -m ruff --version | cut -d' ' -f2) (ruff.toml: 120 columns, pyflakes, import order)"
python -m ruff check .
echo "== testing with $(python -c 'import sys; print(sys.executable)'), $(python -m pytest --version 2>&1)"
python -m pytest "$@"
