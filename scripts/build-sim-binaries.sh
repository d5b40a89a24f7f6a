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
# Env: PRISM_SIM_HOME (cache root), SIM_VERSIONS_FILE (pins file),
#      SIM_BUILD_P (go build -p, default 2). Go's default GOMODCACHE/GOCACHE are shared.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
versions_file=${SIM_VERSIONS_FILE:-$script_dir/sim-versions.env}
sim_home=${PRISM_SIM_HOME:-$HOME/.cache/prism-sim}

log() { printf '[build-sim] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

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
work=$(mktemp -d "${TMPDIR:-/tmp}/prism-sim-build.XXXXXX")
cleanup() { rm -rf "$tmp_out" "$work"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

export CGO_ENABLED=0 GO111MODULE=on GOWORK=off GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
export GOBIN=$tmp_out
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
log "target: $bin_dir"

# --- kwok, kwokctl: plain go install --------------------------------------
kube_nov=${KUBE_VERSION#v}
kwok_ld="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$kube_nov"
for b in kwok kwokctl; do
  timed "$b" go install -p "$par" -trimpath -ldflags "$kwok_ld" "sigs.k8s.io/kwok/cmd/$b@$KWOK_VERSION"
done

# --- kube-apiserver/controller-manager/scheduler: wrapper module ------------
# k8s.io/kubernetes replaces its k8s.io/* staging modules with ./staging/...;
# replace each with its published v0.<minor>.<patch> instead.
kube_minor_patch=${KUBE_VERSION#v1.}            # 32.4
staging_version=v0.$kube_minor_patch            # v0.32.4
kube_major=1
kube_minor=${kube_minor_patch%%.*}
k8s_mod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
[[ -f $k8s_mod ]] || die "could not download k8s.io/kubernetes@$KUBE_VERSION go.mod"
mapfile -t staging < <(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$k8s_mod")
(( ${#staging[@]} > 10 )) || die "found only ${#staging[@]} staging modules in $k8s_mod"
kmod=$work/kube
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
kube_cmds=(kube-apiserver kube-controller-manager kube-scheduler)
t0=$(ts)
log "resolving k8s.io/kubernetes@$KUBE_VERSION deps (${#staging[@]} staging modules -> $staging_version) ..."
# Pin the version in the query: a bare `go get k8s.io/kubernetes/cmd/...` would
# upgrade k8s.io/kubernetes to the latest release.
get_args=()
for b in "${kube_cmds[@]}"; do get_args+=("k8s.io/kubernetes/cmd/$b@$KUBE_VERSION"); done
(cd "$kmod" && go get "${get_args[@]}" >&2)
(cd "$kmod" && go list -m k8s.io/kubernetes | grep -qx "k8s.io/kubernetes $KUBE_VERSION") \
  || die "wrapper module resolved $(cd "$kmod" && go list -m k8s.io/kubernetes), want $KUBE_VERSION"
log "resolved in $(( $(ts) - t0 ))s"
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
kube_ld="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ld+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$kube_major -X $pkg.gitMinor=$kube_minor"
  kube_ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done
for b in "${kube_cmds[@]}"; do
  timed "$b" bash -c 'cd "$1" && go build -p "$2" -trimpath -ldflags "$3" -o "$4" "k8s.io/kubernetes/cmd/$5"' \
    _ "$kmod" "$par" "$kube_ld" "$tmp_out/$b" "$b"
done

# --- etcd: wrapper module (server/v3 has replace directives, so no go install)
emod=$work/etcd
mkdir -p "$emod"
printf 'module prism.local/simetcd\n\ngo 1.23.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >"$emod/go.mod"
(cd "$emod" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2)
timed etcd bash -c 'cd "$1" && go build -p "$2" -trimpath -ldflags "-s -w" -o "$3" go.etcd.io/etcd/server/v3' \
  _ "$emod" "$par" "$tmp_out/etcd"

# --- helm: go install (no replace directives in helm's go.mod) -------------
helm_ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  helm_ld+=" -X $pkg.k8sVersionMajor=$kube_major -X $pkg.k8sVersionMinor=$kube_minor"
done
timed helm go install -p "$par" -trimpath -ldflags "$helm_ld" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"

# --- verify, stamp, publish atomically --------------------------------------
for b in "${binaries[@]}"; do [[ -x $tmp_out/$b ]] || die "missing $b after build"; done
"$tmp_out/kube-apiserver" --version >&2
"$tmp_out/etcd" --version | head -1 >&2
"$tmp_out/kwokctl" --version >&2
cp "$versions_file" "$tmp_out/sim-versions.env"
date -u +%Y-%m-%dT%H:%M:%SZ >"$tmp_out/.complete"
chmod 755 "$tmp_out"
rm -rf "$bin_dir"   # only reached if it existed but was incomplete
mv -T "$tmp_out" "$bin_dir"
log "total build time $(( $(ts) - total_start ))s; size $(du -sh "$bin_dir" | cut -f1)"
echo "$bin_dir"
