# Shared by bin/up, bin/test and .ci/run: a virtualenv and the local services Corral needs.
# shellcheck shell=bash
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

say() { printf '\033[1;36m[corral]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[corral]\033[0m %s\n' "$*" >&2; exit 1; }

pick_python() {  # quiet: a missing interpreter or a pyenv shim without that version must print nothing
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 \
       && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
      echo "$candidate"; return
    fi
  done
  die "Python 3.11 or newer is needed (apt-get install python3 python3-venv)."
}

ensure_venv() {  # ensure_venv requirements-file
  local req="$1" stamp="$VENV/.installed-$(basename "$1")"
  if [ ! -x "$PY" ]; then
    say "creating virtualenv in .venv"
    "$(pick_python)" -m venv "$VENV" || die "could not create a virtualenv (apt-get install python3-venv)"
  fi
  local want; want="$(cat "$ROOT"/requirements*.txt | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "installing Python packages from $(basename "$req")"
    "$PY" -m pip install -q --disable-pip-version-check -r "$req" || die "pip install failed"
    echo "$want" > "$stamp"
  fi
}

can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

apt_install() {  # apt_install package...
  can_apt || return 1
  if [ -z "${_CORRAL_APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
    _CORRAL_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

redis_up() {  # redis_up URL
  "$PY" - "$1" <<'PY' >/dev/null 2>&1
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
PY
}

ensure_redis() {
  local url="${REDIS_URL:-redis://127.0.0.1:6379/0}"
  redis_up "$url" && return 0
  case "$url" in
    redis://127.0.0.1*|redis://localhost*) ;;
    *) die "Redis at $url is not reachable; start it or set REDIS_URL." ;;
  esac
  if ! command -v redis-server >/dev/null 2>&1; then
    say "installing redis-server"
    apt_install redis-server || die "Redis is not running and cannot be installed here: install redis-server (e.g. 'sudo apt-get install redis-server') or set REDIS_URL."
  fi
  say "starting redis-server on 127.0.0.1:6379"
  mkdir -p "$ROOT/data"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir "$ROOT/data" --logfile "$ROOT/data/redis.log" >/dev/null || die "redis-server did not start"
  for _ in $(seq 50); do redis_up "$url" && return 0; sleep 0.1; done
  die "redis-server started but does not answer on $url"
}

postgres_up() { "$PY" - <<'PY' >/dev/null 2>&1
import psycopg
psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", connect_timeout=2).close()
PY
}

ensure_postgres() {
  postgres_up && return 0
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    say "installing postgresql"
    apt_install postgresql || die "PostgreSQL is not running and cannot be installed here."
    # Tests connect over TCP as 'postgres' without a password, as on the development machines.
    for hba in /etc/postgresql/*/main/pg_hba.conf; do
      sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
      sed -i -E 's/^(local\s+all\s+(postgres|all)\s+)\S+/\1trust/' "$hba"
    done
  fi
  say "starting PostgreSQL"
  for version in $(ls /etc/postgresql); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || pg_ctlcluster "$version" main start || true
  done
  for _ in $(seq 100); do postgres_up && return 0; sleep 0.2; done
  die "PostgreSQL did not come up on 127.0.0.1:5432"
}

# supervise [--once] NAME COMMAND...: run COMMAND in its own session (so a terminal's Ctrl-C reaches
# only bin/up, which then stops everything in order), log to $LOGS/NAME.log, keep its pid in
# $RUN/NAME.pid, and start it again when it exits: after 1 s, doubling up to 30 s while it keeps
# crashing, back to 1 s once it stayed up a minute. --once: report the exit, do not restart.
# The supervisor stops on TERM: TERM to the process group, a second TERM after 10 s (RQ's cold
# shutdown, which stops a running job), KILL after 15 s.
supervise() {
  local once=""
  [ "$1" = --once ] && { once=1; shift; }
  local name="$1"; shift
  local log="$LOGS/$name.log" pidfile="$RUN/$name.pid"
  (
    set +e
    child="" backoff=1
    halt() {
      if [ -n "$child" ]; then
        kill -TERM -- "-$child" 2>/dev/null || kill -TERM "$child" 2>/dev/null
        ( sleep 10; kill -TERM -- "-$child"; sleep 5; kill -KILL -- "-$child" ) 2>/dev/null &
        local timer=$!
        wait "$child" 2>/dev/null
        kill "$timer" 2>/dev/null
      fi
      rm -f "$pidfile"
      exit 0
    }
    trap halt TERM
    trap '' INT
    while :; do
      local started=$SECONDS
      setsid "$@" >>"$log" 2>&1 </dev/null &
      child=$!
      echo "$child" >"$pidfile"
      wait "$child"
      local rc=$?
      child=""
      if [ -n "$once" ]; then
        say "$name exited (status $rc); not restarted, see $log"
        rm -f "$pidfile"
        exit 0
      fi
      [ $((SECONDS - started)) -ge 60 ] && backoff=1
      say "$name exited (status $rc); restarting it in ${backoff} s (log: $log)"
      echo "[supervisor] $(date -u +%FT%TZ) exited with status $rc; restarting in ${backoff} s" >>"$log"
      sleep "$backoff" & wait $!
      backoff=$((backoff * 2 > 30 ? 30 : backoff * 2))
    done
  ) 2>/dev/null &  # no "Killed"/"Terminated" job notices from this shell: its exits are reported above
  SUPERVISORS+=("$!")
  say "started $name (log $log)"
}
