#!/usr/bin/env bash
# Fetch, outside any network namespace, what the offline tests check k3d configs against: the
# JSON schema k3d v5 ships for its config files and the source of its cluster-name rule, from
# the k3d Go module at a pinned version (through the Go module proxy).
#
# Output: ${PRISM_SIM_HOME:-$HOME/.cache/prism-sim}/k3d-<version>/{schema.json,clusterName.go,defaults.go}
# Reused when present; written to a temp dir and renamed into place when complete.
set -euo pipefail

K3D_VERSION=v5.6.3   # tests/offline/test_k3d_config.py names the same version
module=github.com/k3d-io/k3d/v5
sim_home=${PRISM_SIM_HOME:-$HOME/.cache/prism-sim}
out=$sim_home/k3d-$K3D_VERSION

if [[ -f $out/schema.json && -f $out/clusterName.go && -f $out/defaults.go ]]; then
  echo "$out"
  exit 0
fi
command -v go >/dev/null || { echo "fetch-k3d-schema: go not found in PATH" >&2; exit 1; }
mkdir -p "$sim_home"
dir=$(GOFLAGS=-mod=mod go mod download -json "$module@$K3D_VERSION" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
tmp=$(mktemp -d "$sim_home/.tmp-k3d.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cp "$dir/pkg/config/v1alpha5/schema.json" "$dir/pkg/client/clusterName.go" \
  "$dir/pkg/types/defaults.go" "$tmp/"
chmod 644 "$tmp"/*
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "$out"
