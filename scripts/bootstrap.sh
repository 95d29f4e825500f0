#!/usr/bin/env bash
# Create or update the project's virtual environment (.venv) with nrt_lab and the given extras.
# Safe to rerun: it reinstalls only when pyproject.toml or the requested extras changed.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-lab,test}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
stamp=".venv/.nrt_lab-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $extras"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> installing nrt_lab[$extras] into .venv"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[$extras]"
  echo "$want" > "$stamp"
fi

# The browser test (tests/test_browser.py) drives Debian's chromium through Playwright, never a downloaded
# browser. Install it when it is missing and we can (root with apt-get: CI on a fresh Debian machine); a failed
# install only warns, and without chromium that one test is skipped with its reason.
# Only ./run-tests asks for it (NRT_LAB_WANT_CHROMIUM=1); under CI (CI=true) a failed install is an error.
if [ "${NRT_LAB_WANT_CHROMIUM:-0}" = 1 ] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing chromium (apt-get) for the browser test"
    apt_log="$(mktemp)"
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$apt_log" 2>&1 &&
           DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >>"$apt_log" 2>&1; }; then
      tail -n 20 "$apt_log" >&2
      if [ "${CI:-}" = true ]; then
        echo "error: could not install chromium, which CI needs for tests/test_browser.py" >&2
        exit 1
      fi
      echo "warning: could not install chromium; tests/test_browser.py will be skipped" >&2
    fi
    rm -f "$apt_log"
  else
    echo "note: /usr/bin/chromium is missing (install Debian's chromium as root); tests/test_browser.py will be skipped"
  fi
fi
