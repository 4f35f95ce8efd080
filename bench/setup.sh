#!/usr/bin/env bash
# Install what the benchmark harness needs. Idempotent, non-interactive, no stdin needed
# (works under CI=true). Safe to run before every `make bench`: it does nothing when all
# is already in place.
#
#   - nginx, wrk, valgrind (the instructions workload: callgrind), h2load (nghttp2-client:
#     the TLS and HTTP/2 workloads) and openssl (their certificate) from Debian packages
#     (apt-get), if missing
#   - bench/.venv with the peer servers: uvicorn[standard], granian, gunicorn, hypercorn,
#     plus psutil (memory sampling)
#
# Colonnade itself is not installed here: the repo Makefile installs it into ./.venv.
set -euo pipefail
exec </dev/null

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$BENCH_DIR/.venv"
PYTHON="${PYTHON:-python3}"
export DEBIAN_FRONTEND=noninteractive

log() { printf '[bench/setup] %s\n' "$*" >&2; }

have_nginx() { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; }
have_wrk() { command -v wrk >/dev/null 2>&1; }
have_taskset() { command -v taskset >/dev/null 2>&1; }
have_valgrind() { command -v valgrind >/dev/null 2>&1; }
have_h2load() { command -v h2load >/dev/null 2>&1; }
have_openssl() { command -v openssl >/dev/null 2>&1; }
# The PHP rows: php-fpm (Debian: /usr/sbin/php-fpmX.Y) and php-cgi; without them those
# rows read n/a and the rest runs.
have_php_fpm() { command -v php-fpm >/dev/null 2>&1 || compgen -G '/usr/sbin/php-fpm*' >/dev/null; }
have_php_cgi() { command -v php-cgi >/dev/null 2>&1; }

# --- system packages -------------------------------------------------------------------
pkgs=()
have_wrk || pkgs+=(wrk)
have_taskset || pkgs+=(util-linux)
have_valgrind || pkgs+=(valgrind)
have_h2load || pkgs+=(nghttp2-client)
have_openssl || pkgs+=(openssl)
have_php_fpm || pkgs+=(php-fpm)
have_php_cgi || pkgs+=(php-cgi)
if ! have_nginx; then
    pkgs+=(nginx-light)
fi
if [ "${#pkgs[@]}" -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
            log "need root (or sudo) to install: ${pkgs[*]}"; exit 1
        fi
    fi
    log "installing Debian packages: ${pkgs[*]}"
    $SUDO apt-get update -qq
    # nginx-light exists on Debian 12; newer releases only ship "nginx".
    if ! $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}"; then
        pkgs=("${pkgs[@]/nginx-light/nginx}")
        $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
    fi
    # The Debian package starts a system nginx on :80 via its postinst when a service
    # manager exists; the harness never uses it (it runs its own nginx with a private
    # config) so leave it alone.
fi
have_nginx || { log "nginx still missing"; exit 1; }
have_wrk || { log "wrk still missing"; exit 1; }
have_valgrind || { log "valgrind still missing"; exit 1; }
have_h2load || { log "h2load still missing"; exit 1; }
have_openssl || { log "openssl still missing"; exit 1; }

# --- peer servers venv -----------------------------------------------------------------
PEERS=(
    "uvicorn[standard]"
    granian
    gunicorn
    hypercorn
    psutil
)
stamp="$VENV/.bench-setup-stamp"
want="$(printf '%s\n' "${PEERS[@]}")"
if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
    && "$VENV/bin/python" -c 'import uvicorn, httptools, uvloop, granian, gunicorn, hypercorn, psutil' \
        2>/dev/null; then
    log "bench/.venv up to date"
else
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    log "installing peers into bench/.venv: ${PEERS[*]}"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PEERS[@]}"
    "$VENV/bin/python" -c 'import uvicorn, httptools, uvloop, granian, gunicorn, hypercorn, psutil'
    printf '%s' "$want" >"$stamp"
fi
log "ok: nginx=$(nginx -v 2>&1 | sed 's/.*nginx\///') wrk=$(command -v wrk)" \
    "valgrind=$(valgrind --version | sed 's/^valgrind-//') h2load=$(command -v h2load)"
