#!/usr/bin/env bash
# Install the Debian packages Vigil's test suite and benchmarks need.
#
# Idempotent: when every package is already installed this exits without
# touching apt (no `apt-get update`), so it is cheap to call from `make test`.
#
#   postgresql  PostgreSQL server (15 on Debian 12) for the postgres test run
#   wrk         HTTP load generator used by the benchmarks
#   openssl     certificate tooling used by the TLS tests/scripts
#   python3-venv  `python3 -m venv` for .venv (not in a bare Debian)
#   chromium    headless browser the portal's Playwright tests drive (never downloaded by Playwright)
set -euo pipefail

PACKAGES=(python3-venv postgresql wrk openssl chromium)

log() { printf 'install-system-packages: %s\n' "$*"; }

is_installed() {
    local status
    status="$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)"
    [[ "$status" == "installed" ]]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    if is_installed "$pkg"; then
        log "ok: $pkg already installed"
    else
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    log "nothing to do"
    exit 0
fi

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo -n)
    else
        log "error: need root (or sudo) to install: ${missing[*]}" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive

# apt/dpkg chatter goes to a log that is only shown if a step fails.
apt_log="$(mktemp -t install-system-packages.XXXXXX.log)"
trap 'rm -f "$apt_log"' EXIT

run_apt() {
    if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@" \
            </dev/null >>"$apt_log" 2>&1; then
        log "error: apt-get $* failed; output follows" >&2
        cat "$apt_log" >&2
        exit 1
    fi
}

log "apt-get update (missing: ${missing[*]})"
run_apt update

log "apt-get install ${missing[*]}"
run_apt install -y --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}"

for pkg in "${missing[@]}"; do
    if ! is_installed "$pkg"; then
        log "error: $pkg still not installed" >&2
        exit 1
    fi
    log "installed: $pkg"
done
