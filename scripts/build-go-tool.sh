#!/usr/bin/env bash
# Build one pinned Go tool from the Go module proxy, pinned by scripts/tool-versions.env
# (NAME=<package>@<version>), the way build-sim-binaries.sh builds the simulated cluster's.
#
# Usage: scripts/build-go-tool.sh NAME          build (or reuse) it; stdout: the binary's path
#        scripts/build-go-tool.sh --path NAME   print where it is (or would be); builds nothing,
#                                               exit 1 when it is not there and complete
#        scripts/build-go-tool.sh --download-only NAME
#                                               fetch the modules its build reads into Go's
#                                               module cache; builds nothing, prints nothing
#
# Output: ${PRISM_SIM_HOME:-$HOME/.cache/prism-sim}/tools/<name>-<version>/<name>, where <name>
# is the binary `go install` makes (the package's last path element). A directory with a
# `.complete` stamp holding the same pin is reused as is. Builds go to a temp dir that is renamed
# into place only when complete; a lock serialises concurrent builds of one pin.
#
# Progress and timings go to stderr; stdout has exactly one line: the binary's path.
#
# Env: PRISM_SIM_HOME (cache root), TOOL_VERSIONS_FILE (pins file), GO_BUILD_P (go build -p,
#      default 2). Go's default GOMODCACHE/GOCACHE are shared.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
versions_file=${TOOL_VERSIONS_FILE:-$script_dir/tool-versions.env}
sim_home=${PRISM_SIM_HOME:-$HOME/.cache/prism-sim}

log() { printf '[build-go-tool] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
usage() { die "usage: $0 [--path] NAME (a key of $versions_file)"; }

only_path=false download_only=false
case ${1:-} in
  --path) only_path=true; shift ;;
  --download-only) download_only=true; shift ;;
esac
[[ $# -eq 1 && -n $1 ]] || usage
# actionlint, ACTIONLINT and kube-score/KUBE_SCORE all name their pin.
want=${1^^}
want=${want//-/_}

[[ -f $versions_file ]] || die "missing $versions_file"

# Parse KEY=value lines ourselves (no sourcing of arbitrary shell).
pin=
known=()
while IFS= read -r line || [[ -n $line ]]; do
  line=${line%%#*}
  line=${line//[[:space:]]/}
  [[ -z $line ]] && continue
  [[ $line == *=* ]] || die "not KEY=value in $versions_file: $line"
  key=${line%%=*}
  known+=("$key")
  [[ $key == "$want" ]] && pin=${line#*=}
done <"$versions_file"
[[ -n $pin ]] || die "no pin for $1 in $versions_file (known: ${known[*]:-none})"

pkg=${pin%@*} version=${pin##*@}
[[ $pin == *@* && $pkg =~ ^[A-Za-z0-9][A-Za-z0-9._~/-]*$ ]] \
  || die "$want='$pin' is not <go package>@<version>"
[[ $version =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] \
  || die "$want: version '$version' is not vX.Y.Z (a branch or 'latest' is not a pin)"
# The binary's name as `go install` gives it: the last path element, or the one before a
# major-version suffix (example.com/tool/v2 -> tool).
name=${pkg##*/}
if [[ $name =~ ^v[0-9]+$ ]]; then
  rest=${pkg%/*}
  name=${rest##*/}
fi

tool_dir=$sim_home/tools/$name-$version
binary=$tool_dir/$name

is_complete() { # the binary is there and the stamp records this very pin
  [[ -x $binary && -f $tool_dir/.complete ]] && [[ $(head -n1 "$tool_dir/.complete") == "$pin" ]]
}

if $download_only; then
  command -v go >/dev/null || die "go not found in PATH (needed once, to fetch $name)"
  # `go install -n` loads the packages (downloading their modules) and prints, not runs, the build.
  # (The build's own environment, so that it reads the same packages.)
  out=$(CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local GOWORK=off go install -n "$pkg@$version" 2>&1) \
    || { tail -n 20 <<<"$out" >&2; die "could not download the modules of $pkg@$version (needs the network)"; }
  exit 0
fi

if $only_path; then
  echo "$binary"
  is_complete || { log "$binary is not built: run scripts/build-go-tool.sh $1"; exit 1; }
  exit 0
fi

if is_complete; then
  log "reusing $binary"
  echo "$binary"
  exit 0
fi

command -v go >/dev/null || die "go not found in PATH (needed once, to build $name)"
mkdir -p "$sim_home/tools"
exec 9>"$sim_home/tools/.lock-$name-$version"
flock 9
if is_complete; then
  log "reusing $binary (built by a concurrent run)"
  echo "$binary"
  exit 0
fi

# Under the lock, leftovers of an earlier killed build of this pin are stale.
rm -rf "$sim_home/tools/.tmp-$name-$version".*
tmp_out=$(mktemp -d "$sim_home/tools/.tmp-$name-$version.XXXXXX")
trap 'rm -rf "$tmp_out"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

export CGO_ENABLED=0 GO111MODULE=on GOWORK=off GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
export GOBIN=$tmp_out
# The compiler collects garbage less often (see build-sim-binaries.sh); a GOGC of your own is kept.
export GOGC=${GOGC:-400}
started=${EPOCHREALTIME/[.,]/}
log "building $name from $pkg@$version with $(go env GOVERSION) ..."
# `go install pkg@version` builds from the module's own go.mod, ignoring any go.mod here.
go install -p "${GO_BUILD_P:-2}" -trimpath -ldflags "-s -w" "$pkg@$version" >&2
[[ -x $tmp_out/$name ]] || die "go install made no $name in $tmp_out"

# The binary's own build info must name the pinned package and version.
info=$(go version -m "$tmp_out/$name")
grep -qP "^\tpath\t\Q$pkg\E$" <<<"$info" || die "$name was built from another package:"$'\n'"$info"
grep -qP "^\tmod\t\S+\t\Q$version\E(\t|$)" <<<"$info" \
  || die "$name was built at another version:"$'\n'"$info"

{ echo "$pin"; date -u +%Y-%m-%dT%H:%M:%SZ; go env GOVERSION; } >"$tmp_out/.complete"
chmod 755 "$tmp_out"
rm -rf "$tool_dir"   # only reached if it existed but was incomplete or of another pin
mv -T "$tmp_out" "$tool_dir"
trap - EXIT
elapsed=$(( ${EPOCHREALTIME/[.,]/} - started ))
log "built $binary in $((elapsed / 1000000)).$((elapsed % 1000000 / 100000))s ($(du -sh "$binary" | cut -f1))"
echo "$binary"
