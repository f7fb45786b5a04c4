#!/usr/bin/env bash
# Make sure the machine has what dockermagic's tests and demo need, installing
# and starting only what is missing (idempotent; fast when all is there):
#   - a Docker Engine that answers (installed from Debian's docker.io when we
#     are root on Debian, started in the background when it is not running);
#   - mmdebstrap, to build images offline when no registry is reachable;
#   - optional extras named as arguments (e.g. "chromium" for browser tests).
# Usage: tools/ensure-system.sh PYTHON [extra-debian-package ...]
set -euo pipefail

PYTHON="${1:?usage: ensure-system.sh PYTHON [package ...]}"
shift
EXTRAS=("$@")
LOG_DIR="${DOCKERMAGIC_STATE_DIR:-$PWD/.state}"
mkdir -p "$LOG_DIR"

say() { printf '[setup] %s\n' "$*"; }

engine_answers() {
  "$PYTHON" - <<'PY' >/dev/null 2>&1
import docker
docker.from_env(timeout=5).ping()
PY
}

can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

APT_UPDATED=0
apt_install() {
  if ! can_apt; then
    say "missing Debian packages: $* (install them, or run this as root on Debian)"
    return 1
  fi
  if [ "$APT_UPDATED" = 0 ]; then
    say "apt-get update"
    apt-get update -qq >"$LOG_DIR/apt.log" 2>&1 || { tail -5 "$LOG_DIR/apt.log"; return 1; }
    APT_UPDATED=1
  fi
  say "installing $*"
  # The tests start their own sshd on 127.0.0.1; the package must not start
  # (or enable) the machine's sshd: a policy-rc.d that says no, for this
  # install only, where the machine has none.
  local guard=""
  if [ ! -e /usr/sbin/policy-rc.d ] && [[ " $* " == *" openssh-server "* ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    guard=/usr/sbin/policy-rc.d
  fi
  local status=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
    >>"$LOG_DIR/apt.log" 2>&1 || status=$?
  [ -n "$guard" ] && rm -f "$guard"
  [ "$status" = 0 ] || { tail -20 "$LOG_DIR/apt.log"; return 1; }
}

need=()
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
for pkg in "${EXTRAS[@]}"; do
  case "$pkg" in
    chromium) [ -x /usr/bin/chromium ] || need+=(chromium) ;;
    *) dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg") ;;
  esac
done

if engine_answers; then
  say "Docker Engine answers"
else
  if [ -z "${DOCKER_HOST:-}" ] && ! command -v dockerd >/dev/null 2>&1; then
    need+=(docker.io)
  fi
fi
if [ "${#need[@]}" -gt 0 ]; then
  apt_install "${need[@]}"
fi

if ! engine_answers; then
  if [ -n "${DOCKER_HOST:-}" ]; then
    say "DOCKER_HOST=$DOCKER_HOST does not answer; start that engine first"
    exit 1
  fi
  if [ "$(id -u)" != 0 ]; then
    say "the Docker Engine is not running; start it (sudo systemctl start docker)"
    exit 1
  fi
  say "starting dockerd (log: $LOG_DIR/dockerd.log)"
  # setsid + nohup: the engine outlives this make run and its terminal.
  setsid nohup dockerd >"$LOG_DIR/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 1 120); do
    engine_answers && break
    sleep 0.5
  done
  if ! engine_answers; then
    say "dockerd did not answer within 60 s; its log ends with:"
    tail -20 "$LOG_DIR/dockerd.log"
    exit 1
  fi
  say "Docker Engine started"
fi
