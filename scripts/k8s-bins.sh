#!/usr/bin/env bash
# k8s-bins.sh - print the path of a folder holding `etcd` and `kube-apiserver`
# executables, for tests that run a real API server (envtest style).
#
#   dir="$(scripts/k8s-bins.sh)"
#
# Only that path goes to stdout (as the last line); progress goes to stderr.
#
# Resolution order:
#   1. $KUBEBUILDER_ASSETS, if it names a folder with both executables
#      (the controller-runtime envtest convention): printed as is, nothing built.
#   2. The per-version cache
#        ${XDG_CACHE_HOME:-$HOME/.cache}/vllm-ep-webhook/k8s/<k8s>-etcd<etcd>/
#      reused when both binaries there answer `--version` with the pinned version.
#   3. Otherwise both are built from the Go module proxy (no other download
#      source is used) into a temp dir beside the cache entry, checked, and
#      renamed into place in one step, under an flock so that concurrent runs
#      build once.
#
# Versions (override with VLLM_EP_K8S_VERSION / VLLM_EP_ETCD_VERSION):
#   kube-apiserver: module k8s.io/kubernetes at v$K8S_VERSION; its staging
#     modules (k8s.io/api, k8s.io/apiserver, ...) are pinned by `replace` to
#     v0.<minor>.<patch>; the list is read from that release's own go.mod.
#   etcd: module go.etcd.io/etcd/server/v3 at v$ETCD_VERSION, the version that
#     kubeadm of that Kubernetes minor release deploys by default.
set -euo pipefail

K8S_VERSION="${VLLM_EP_K8S_VERSION:-1.34.4}"
ETCD_VERSION="${VLLM_EP_ETCD_VERSION:-3.6.5}"

log() { printf '[k8s-bins] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

semver_re='^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$'
[[ "$K8S_VERSION" =~ $semver_re ]] || die "bad Kubernetes version '$K8S_VERSION' (want e.g. 1.34.4)"
[[ "$ETCD_VERSION" =~ $semver_re ]] || die "bad etcd version '$ETCD_VERSION' (want e.g. 3.6.5)"
[[ "$K8S_VERSION" == 1.* ]] || die "Kubernetes version must be 1.x, got '$K8S_VERSION'"

# has_bins DIR: both executables are present in DIR.
has_bins() {
    [[ -f "$1/etcd" && -x "$1/etcd" && -f "$1/kube-apiserver" && -x "$1/kube-apiserver" ]]
}

# bins_ok DIR: both executables run and report the pinned versions.
bins_ok() {
    local dir="$1" out
    has_bins "$dir" || return 1
    out="$("$dir/kube-apiserver" --version 2>/dev/null)" || return 1
    [[ "$out" == *"v$K8S_VERSION"* ]] || return 1
    out="$("$dir/etcd" --version 2>/dev/null)" || return 1
    [[ "$out" == *"etcd Version: $ETCD_VERSION"* ]] || return 1
}

# 1. envtest convention.
if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
    if has_bins "$KUBEBUILDER_ASSETS"; then
        log "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
        printf '%s\n' "$KUBEBUILDER_ASSETS"
        exit 0
    fi
    log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks etcd and/or kube-apiserver; using the cache"
fi

# 2. Cache hit, without taking the lock.
cache_root="${XDG_CACHE_HOME:-${HOME:?set HOME or XDG_CACHE_HOME}/.cache}/vllm-ep-webhook/k8s"
dest="$cache_root/${K8S_VERSION}-etcd${ETCD_VERSION}"
if bins_ok "$dest"; then
    printf '%s\n' "$dest"
    exit 0
fi

# 3. Build, under the lock, into a temp dir beside the cache entry.
source "$(dirname "${BASH_SOURCE[0]}")/lib/build-cache.sh"
ensure_build_tools "k8s.io/kubernetes v$K8S_VERSION"
lock_or_done bins_ok
start_build

# --- etcd ------------------------------------------------------------------
etcd_mod=go.etcd.io/etcd/server/v3
mkdir -p "$tmp/etcd"
(
    cd "$tmp/etcd"
    printf 'module vllm-ep-webhook.local/k8s-bins/etcd\n\ngo 1.24\n' >go.mod
    log "etcd: resolving $etcd_mod@v$ETCD_VERSION"
    go get "$etcd_mod@v$ETCD_VERSION" >&2
    log "etcd: go build"
    go build -trimpath -ldflags "-s -w" -o "$out/etcd" "$etcd_mod"
)
log "etcd: done after $((SECONDS - start))s"

# --- kube-apiserver ----------------------------------------------------------
k8s_mod=k8s.io/kubernetes
k8s_minor_patch="${K8S_VERSION#1.}"   # 34.4 (or 34.0-rc.1)
staging_version="v0.$k8s_minor_patch"  # staging modules are tagged v0.<minor>.<patch>
mkdir -p "$tmp/apiserver"
(
    cd "$tmp/apiserver"
    log "kube-apiserver: fetching $k8s_mod@v$K8S_VERSION"
    info="$(go mod download -json "$k8s_mod@v$K8S_VERSION")"
    upstream_mod="$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
    [[ -f "$upstream_mod" ]] || die "could not find the go.mod of $k8s_mod@v$K8S_VERSION"

    # Staging modules: every `X => ./staging/...` replacement in the release's go.mod.
    staging="$(awk '
        { sub(/\/\/.*/, "") }
        /=>/ {
            split($0, side, "=>")
            nl = split(side[1], lhs, " ")
            nr = split(side[2], rhs, " ")
            first = (lhs[1] == "replace") ? 2 : 1
            if (nl >= first && nr >= 1 && rhs[1] ~ /^\.\/staging\//) print lhs[first]
        }' "$upstream_mod" | sort -u)"
    n_staging="$(printf '%s\n' "$staging" | grep -c . || true)"
    for m in k8s.io/api k8s.io/apimachinery k8s.io/apiserver k8s.io/client-go k8s.io/component-base; do
        grep -qxF "$m" <<<"$staging" || die "no staging replacement for $m in $upstream_mod"
    done
    log "kube-apiserver: pinning $n_staging staging modules to $staging_version"

    {
        printf 'module vllm-ep-webhook.local/k8s-bins/apiserver\n\n'
        # Same language version and GODEBUG defaults as the release's own build.
        awk '/^go[[:space:]]/ { print; print "" }' "$upstream_mod"
        awk '/^godebug[[:space:]]*\(/ { blk = 1 } blk || /^godebug[[:space:]]/ { print } blk && /\)/ { blk = 0 }' "$upstream_mod"
        printf '\nreplace (\n'
        while IFS= read -r m; do
            printf '\t%s => %s %s\n' "$m" "$m" "$staging_version"
        done <<<"$staging"
        printf ')\n'
    } >go.mod

    log "kube-apiserver: resolving dependencies"
    go get "$k8s_mod/cmd/kube-apiserver@v$K8S_VERSION" >&2

    # The version variables that the Kubernetes release build sets by -X.
    build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    ldflags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $pkg.gitVersion=v$K8S_VERSION"
        ldflags+=" -X $pkg.gitMajor=1"
        ldflags+=" -X $pkg.gitMinor=${k8s_minor_patch%%.*}"
        ldflags+=" -X $pkg.gitTreeState=clean"
        ldflags+=" -X $pkg.buildDate=$build_date"
    done
    log "kube-apiserver: go build (slow: about 10+ minutes on 2 cores from a cold Go build cache)"
    go build -trimpath -ldflags "$ldflags" -o "$out/kube-apiserver" "$k8s_mod/cmd/kube-apiserver"
)
log "kube-apiserver: done after $((SECONDS - start))s"

bins_ok "$out" || die "the built binaries do not report v$K8S_VERSION / etcd $ETCD_VERSION"
finish_build
