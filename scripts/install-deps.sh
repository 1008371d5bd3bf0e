#!/bin/sh
# Install the Debian packages calico-py needs, only those that are missing: every package
# named in src/calico/programs.txt, the one list of the programs the code runs.
# Idempotent; run as root on Debian 12 (make demo / make test call it). Plain sh and awk:
# a fresh Debian may have no python3 yet. `--list` prints the packages and exits.
set -eu

LIST="$(dirname "$0")/../src/calico/programs.txt"
# Column 2 of every entry; "@calico-py" marks this project's own commands (pip installs them).
PACKAGES=$(awk '!/^[[:space:]]*(#|$)/ && $2 !~ /^@/ { print $2 }' "$LIST" | sort -u)
if [ -z "$PACKAGES" ]; then
    echo "install-deps: no packages found in $LIST" >&2
    exit 1
fi

if [ "${1:-}" = "--list" ]; then
    echo "$PACKAGES"
    exit 0
fi

missing=""
for pkg in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done

if [ -z "$missing" ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing Debian packages:$missing (run as root to install them)" >&2
    exit 1
fi

echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
# Debian starts packaged daemons on install; calico-py runs its own etcd, BIRD and FRR per
# test or per lab namespace, so stop the system-wide ones where a service manager exists.
for svc in etcd bird frr; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
        systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
done
