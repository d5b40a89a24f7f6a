#!/usr/bin/env bash
# Build the binaries of a simulated Kubernetes cluster (real control plane + KWOK)
# from source via the Go module proxy, pinned by scripts/sim-versions.env.
#
# Output: ${PRISM_SIM_HOME:-$HOME/.cache/prism-sim}/bin-<hash>/ with
#   kwok kwokctl kube-apiserver kube-controller-manager kube-scheduler etcd helm
# where <hash> is a short sha256 of sim-versions.env's content. A dir with a
# `.complete` stamp is reused as is; a changed pin gives a new hash (rebuild).
# Builds go to a temp dir that is renamed into place only when complete.
#
# Progress and timings go to stderr; stdout has exactly one line: the bin dir.
#
# --download-only: fetch every module the builds read into Go's module cache, build nothing
# (then a build needs no network; bench/setup_fresh.py uses it to time the two apart).
#
# Env: PRISM_SIM_HOME (cache root), SIM_VERSIONS_FILE (pins file),
#      SIM_BUILD_P (go build -p, default 2). Go's default GOMODCACHE/GOCACHE are shared.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
versions_file=${SIM_VERSIONS_FILE:-$script_dir/sim-versions.env}
sim_home=${PRISM_SIM_HOME:-$HOME/.cache/prism-sim}

log() { printf '[build-sim] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

download_only=false
case "$*" in
  "") ;;
  --download-only) download_only=true ;;
  *) die "usage: $0 [--download-only]" ;;
esac

[[ -f $versions_file ]] || die "missing $versions_file"
command -v go >/dev/null || die "go not found in PATH"

# Parse KEY=value lines ourselves (no sourcing of arbitrary shell).
KUBE_VERSION= KWOK_VERSION= ETCD_VERSION= HELM_VERSION=
while IFS= read -r line || [[ -n $line ]]; do
  line=${line%%#*}
  line=${line//[[:space:]]/}
  [[ -z $line ]] && continue
  key=${line%%=*} val=${line#*=}
  case $key in
    KUBE_VERSION|KWOK_VERSION|ETCD_VERSION|HELM_VERSION) printf -v "$key" '%s' "$val" ;;
    *) log "ignoring unknown key $key" ;;
  esac
done <"$versions_file"
for k in KUBE_VERSION KWOK_VERSION ETCD_VERSION HELM_VERSION; do
  [[ ${!k} =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "$k='${!k}' is not vX.Y.Z"
done

hash=$(sha256sum "$versions_file" | cut -c1-12)
bin_dir=$sim_home/bin-$hash
stamp=$bin_dir/.complete
binaries=(kwok kwokctl kube-apiserver kube-controller-manager kube-scheduler etcd helm)

is_complete() {
  [[ -f $1/.complete ]] || return 1
  local b
  for b in "${binaries[@]}"; do [[ -x $1/$b ]] || return 1; done
}

tmp_out=
if ! $download_only; then
  if is_complete "$bin_dir"; then
    log "reusing $bin_dir"
    echo "$bin_dir"
    exit 0
  fi

  mkdir -p "$sim_home"
  # Serialise concurrent builds of the same pins.
  exec 9>"$sim_home/.lock-$hash"
  flock 9
  if is_complete "$bin_dir"; then
    log "reusing $bin_dir (built by a concurrent run)"
    echo "$bin_dir"
    exit 0
  fi

  # Under the lock, leftovers of an earlier killed build of these pins are stale.
  rm -rf "$sim_home/.tmp-bin-$hash".*
  tmp_out=$(mktemp -d "$sim_home/.tmp-bin-$hash.XXXXXX")
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/prism-sim-build.XXXXXX")
cleanup() { rm -rf ${tmp_out:+"$tmp_out"} "$work"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

export CGO_ENABLED=0 GO111MODULE=on GOWORK=off GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
export GOBIN=${tmp_out:-$work/bin}
# The compiler collects garbage less often: 13 % less time for a cold kube-scheduler here, peak
# 0.7 GB a compile instead of 0.5 (scripts/SIM-BUILD.md). A GOGC of your own is kept.
export GOGC=${GOGC:-400}
par=${SIM_BUILD_P:-2}
ts() { date +%s; }
total_start=$(ts)
timed() { # timed NAME CMD...
  local name=$1 t0; shift
  t0=$(ts)
  log "building $name ..."
  "$@" >&2
  log "built $name in $(( $(ts) - t0 ))s"
}

log "pins: kube=$KUBE_VERSION kwok=$KWOK_VERSION etcd=$ETCD_VERSION helm=$HELM_VERSION"
$download_only || log "target: $bin_dir"

# Where a fresh machine's time goes is in scripts/SIM-BUILD.md: almost all of it compiling, on
# every core. Each binary (or group) is one `go` command; the Kubernetes libraries cannot be
# shared between them (kwok needs k8s.io/* v0.33, helm's containerd and kube-controller-manager's
# cadvisor need incompatible github.com/containerd/errdefs).

# --- kube-apiserver/controller-manager/scheduler: wrapper module -------------------------------
# k8s.io/kubernetes replaces its k8s.io/* staging modules with ./staging/...; replace each with
# its published v0.<minor>.<patch> instead.
kube_minor_patch=${KUBE_VERSION#v1.}            # 32.4
staging_version=v0.$kube_minor_patch            # v0.32.4
kube_major=1
kube_minor=${kube_minor_patch%%.*}
kube_cmds=(kube-apiserver kube-controller-manager kube-scheduler)
kube_pkgs=()
for b in "${kube_cmds[@]}"; do kube_pkgs+=("k8s.io/kubernetes/cmd/$b"); done
kmod=$work/kube
emod=$work/etcd
kwok_pkgs=("sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION")
helm_pkg=helm.sh/helm/v3/cmd/helm@$HELM_VERSION

resolve_kube() { # write the wrapper module and resolve its build list (downloads go.mod files)
  local k8s_mod staging m t0
  t0=$(ts)
  k8s_mod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
  [[ -f $k8s_mod ]] || die "could not download k8s.io/kubernetes@$KUBE_VERSION go.mod"
  mapfile -t staging < <(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$k8s_mod")
  (( ${#staging[@]} > 10 )) || die "found only ${#staging[@]} staging modules in $k8s_mod"
  mkdir -p "$kmod"
  {
    echo "module prism.local/simkube"
    echo
    # Same language version / GODEBUG defaults as k8s.io/kubernetes itself.
    sed -n -e '/^go /p' -e '/^godebug /p' "$k8s_mod"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    for m in "${staging[@]}"; do echo "	$m => $m $staging_version"; done
    echo ")"
  } >"$kmod/go.mod"
  log "resolving k8s.io/kubernetes@$KUBE_VERSION deps (${#staging[@]} staging modules -> $staging_version) ..."
  # Pin the version in the query: a bare `go get k8s.io/kubernetes/cmd/...` would upgrade
  # k8s.io/kubernetes to the latest release.
  (cd "$kmod" && go get "${kube_pkgs[@]/%/@$KUBE_VERSION}" >&2)
  (cd "$kmod" && go list -m k8s.io/kubernetes | grep -qx "k8s.io/kubernetes $KUBE_VERSION") \
    || die "wrapper module resolved $(cd "$kmod" && go list -m k8s.io/kubernetes), want $KUBE_VERSION"
  log "resolved in $(( $(ts) - t0 ))s"
}

resolve_etcd() { # server/v3 has replace directives, so no `go install`: a wrapper module
  mkdir -p "$emod"
  printf 'module prism.local/simetcd\n\ngo 1.23.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >"$emod/go.mod"
  (cd "$emod" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2)
}

resolve_kube
resolve_etcd

if $download_only; then
  # Every module the builds read, and nothing more: loading the packages downloads them
  # (`go install -n` prints the build instead of running it).
  t0=$(ts)
  # -n prints the build to stderr: kept out of sight, but shown when the download fails.
  for pkgs in "${kwok_pkgs[*]}" "$helm_pkg"; do
    # shellcheck disable=SC2086 # the words of $pkgs are packages
    out=$(go install -n $pkgs 2>&1) || { tail -n 20 <<<"$out" >&2; die "could not download the modules of $pkgs"; }
  done
  (cd "$kmod" && go list -deps "${kube_pkgs[@]}" >/dev/null)
  (cd "$emod" && go list -deps go.etcd.io/etcd/server/v3 >/dev/null)
  log "downloaded every module the builds read in $(( $(ts) - t0 ))s, into $(go env GOMODCACHE)"
  exit 0
fi

# --- kwok, kwokctl: one go install (one package graph; one links while the other compiles) ----
kube_nov=${KUBE_VERSION#v}
kwok_ld="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$kube_nov"
timed "kwok, kwokctl" go install -p "$par" -trimpath -ldflags "$kwok_ld" "${kwok_pkgs[@]}"

build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
kube_ld="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ld+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$kube_major -X $pkg.gitMinor=$kube_minor"
  kube_ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done
timed "${kube_cmds[*]}" bash -c 'cd "$1" && shift && go build -p "$1" -trimpath -ldflags "$2" -o "$3/" "${@:4}"' \
  _ "$kmod" "$par" "$kube_ld" "$tmp_out" "${kube_pkgs[@]}"

timed etcd bash -c 'cd "$1" && go build -p "$2" -trimpath -ldflags "-s -w" -o "$3" go.etcd.io/etcd/server/v3' \
  _ "$emod" "$par" "$tmp_out/etcd"

# --- helm: go install (no replace directives in helm's go.mod) ---------------------------------
helm_ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  helm_ld+=" -X $pkg.k8sVersionMajor=$kube_major -X $pkg.k8sVersionMinor=$kube_minor"
done
timed helm go install -p "$par" -trimpath -ldflags "$helm_ld" "$helm_pkg"

# --- verify, stamp, publish atomically --------------------------------------
for b in "${binaries[@]}"; do [[ -x $tmp_out/$b ]] || die "missing $b after build"; done
"$tmp_out/kube-apiserver" --version >&2
"$tmp_out/etcd" --version >"$work/etcd-version"   # not piped into head: etcd would die of SIGPIPE
head -n 1 "$work/etcd-version" >&2
"$tmp_out/kwokctl" --version >&2
cp "$versions_file" "$tmp_out/sim-versions.env"
date -u +%Y-%m-%dT%H:%M:%SZ >"$tmp_out/.complete"
chmod 755 "$tmp_out"
rm -rf "$bin_dir"   # only reached if it existed but was incomplete
mv -T "$tmp_out" "$bin_dir"
log "total build time $(( $(ts) - total_start ))s; size $(du -sh "$bin_dir" | cut -f1)"
echo "$bin_dir"
