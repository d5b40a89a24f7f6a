#!/usr/bin/env bash
# Install the real servers the tests start: sshd (openssh-server), PostgreSQL and Redis.
# Idempotent: when every package is already installed it does nothing (no apt-get update either),
# so CI can call it on every run. Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(openssh-server postgresql redis-server)

missing=()
for package in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
    [ "$status" = "installed" ] || missing+=("$package")
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
fi
echo "install-test-deps: installing ${missing[*]}"
"${sudo[@]}" apt-get update -qq
# policy-rc.d 101: packages must not start their services; the tests start their own servers.
policy=/usr/sbin/policy-rc.d
created_policy=no
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    created_policy=yes
fi
trap '[ "$created_policy" = yes ] && "${sudo[@]}" rm -f "$policy"' EXIT
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
