#!/usr/bin/env bash
# Make sure the named services (redis, postgres, chromium, libreoffice, fonts, nginx) are there and running on this machine.
# Starts them when they are installed but down; installs them from Debian's packages when missing
# (as root). A REDIS_URL or DATABASE_URL that points at another host is left alone.
set -euo pipefail

log() { echo "services: $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 100); do port_open "$1" "$2" && return 0; sleep 0.1; done
  log "$3 did not come up on $1:$2"; return 1
}

apt_install() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    log "$* missing and I cannot install it here (need root and apt-get): install it and run me again."; exit 1
  fi
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# host and port of a URL like redis://host:port/0 or postgres://user@host:port/db
url_host() { local h=${1#*://}; h=${h#*@}; h=${h%%/*}; echo "${h%%:*}"; }
url_port() { local h=${1#*://}; h=${h#*@}; h=${h%%/*}; [[ $h == *:* ]] && echo "${h##*:}" || echo "$2"; }
is_local() { [[ $1 == 127.0.0.1 || $1 == localhost ]]; }

ensure_redis() {
  local url=${REDIS_URL:-redis://127.0.0.1:6379/0}
  local host port; host=$(url_host "$url"); port=$(url_port "$url" 6379)
  port_open "$host" "$port" && return 0
  is_local "$host" || { log "Redis at $host:$port is not reachable"; exit 1; }
  command -v redis-server >/dev/null || apt_install redis-server
  local dir=${VAR_DIR:-$PWD/var}/redis; mkdir -p "$dir"
  log "starting redis-server on port $port"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
    --dir "$dir" --logfile "$dir/redis.log" --pidfile "$dir/redis.pid"
  wait_port 127.0.0.1 "$port" Redis
}

ensure_postgres() {
  local url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/reports}
  [[ $url == postgres* ]] || return 0
  local host port; host=$(url_host "$url"); port=$(url_port "$url" 5432)
  port_open "$host" "$port" && return 0
  is_local "$host" || { log "PostgreSQL at $host:$port is not reachable"; exit 1; }
  local fresh=""
  if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    apt_install postgresql; fresh=1
  fi
  local version; version=$(ls /etc/postgresql | sort -V | tail -1)
  log "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_port 127.0.0.1 "$port" PostgreSQL
  if [ -n "$fresh" ]; then
    # A machine we just installed it on: give the postgres role the test password the CI uses.
    su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\""
  fi
}

ensure_chromium() {
  command -v chromium >/dev/null || apt_install chromium
}

ensure_libreoffice() {  # a second XLSX reader for the tests, and pdftoppm for the PDF pages
  command -v soffice >/dev/null && command -v pdftoppm >/dev/null || apt_install libreoffice-calc-nogui poppler-utils
}

ensure_nginx() {  # the proxy the download offload is tested behind (tests/test_downloads.py); not started here
  command -v nginx >/dev/null || apt_install nginx-light
}

ensure_fonts() {  # what PDFs are set in (reports/writers/pdf.py): Latin and more, CJK, Korean, emoji
  local root=/usr/share/fonts/truetype
  [ -f $root/dejavu/DejaVuSans.ttf ] && [ -f $root/droid/DroidSansFallbackFull.ttf ] && [ -f $root/nanum/NanumGothic.ttf ] \
    && [ -f $root/ancient-scripts/Symbola_hint.ttf ] || apt_install fonts-dejavu-core fonts-droid-fallback fonts-nanum fonts-symbola
}

for service in "$@"; do
  case $service in
    redis) ensure_redis ;;
    postgres) ensure_postgres ;;
    chromium) ensure_chromium ;;
    libreoffice) ensure_libreoffice ;;
    fonts) ensure_fonts ;;
    nginx) ensure_nginx ;;
    *) log "unknown service $service (redis, postgres, chromium, libreoffice, fonts, nginx)"; exit 2 ;;
  esac
done
