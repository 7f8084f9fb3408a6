# Sourced by run.sh and test.sh: make .venv with a supported Python (3.10-3.12) and install edgewax.
# Installs system packages with apt-get only when something is missing. Idempotent and quick when
# nothing changed (the install is redone only when pyproject.toml changes).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${EDGEWAX_VENV:-$ROOT/.venv}"
EXTRAS="${1:-}"

_sudo() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }

apt_install() {
  # apt_install PKG...: install the Debian packages that are not installed yet.
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "bootstrap: apt-get install ${missing[*]}" >&2
  _sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive _sudo apt-get install -y -qq "${missing[@]}" >&2
}

find_python() {
  for py in python3.12 python3.11 python3.10 python3; do
    if command -v "$py" >/dev/null 2>&1 &&
       "$py" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 12)))' 2>/dev/null; then
      echo "$py"; return 0
    fi
  done
  return 1
}

if [ ! -x "$VENV/bin/python" ]; then
  PY="$(find_python || true)"
  if [ -z "$PY" ]; then
    apt_install python3 python3-venv python3-pip
    PY="$(find_python)" || { echo "bootstrap: need Python 3.10-3.12" >&2; exit 1; }
  fi
  if ! "$PY" -m venv "$VENV" >/dev/null 2>&1; then
    rm -rf "$VENV"
    apt_install python3-venv
    "$PY" -m venv "$VENV"
  fi
fi

STAMP="$VENV/.edgewax-installed"
HASH="$(sha256sum < "$ROOT/pyproject.toml" | cut -d' ' -f1)"
HAVE="$(cat "$STAMP" 2>/dev/null || true)"
# Reinstall when pyproject.toml changed or extras are wanted that are not installed yet.
if [ "${HAVE%% *}" != "$HASH" ] || { [ -n "$EXTRAS" ] && [ "${HAVE#* }" != "$EXTRAS" ]; }; then
  echo "bootstrap: installing edgewax${EXTRAS:+[$EXTRAS]} into $VENV" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q -e "$ROOT${EXTRAS:+[$EXTRAS]}" >&2
  echo "$HASH $EXTRAS" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
