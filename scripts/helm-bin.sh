#!/usr/bin/env bash
# helm-bin.sh - print the path of a folder holding a `helm` (v3) executable,
# for the chart tests.
#
#   dir="$(scripts/helm-bin.sh)"
#
# Only that path goes to stdout (as the last line); progress goes to stderr.
#
# Resolution order:
#   1. $HELM_BIN_DIR, if it names a folder with a `helm` executable: printed
#      as is, nothing built (its version is not checked).
#   2. The per-version cache
#        ${XDG_CACHE_HOME:-$HOME/.cache}/vllm-ep-webhook/helm/<version>/
#      reused when `helm version` there reports the pinned version.
#   3. Otherwise helm is built from the Go module proxy (no other download
#      source is used) into a temp dir beside the cache entry, checked, and
#      renamed into place in one step, under an flock so that concurrent runs
#      build once.
#
# Version (override with VLLM_EP_HELM_VERSION): module helm.sh/helm/v3 at
# v$HELM_VERSION, package helm.sh/helm/v3/cmd/helm, with the -X version flags
# that helm's own Makefile sets (the helm version, and the Kubernetes version
# that `helm template`/`helm lint` assume, taken from the release's k8s.io/client-go).
set -euo pipefail

HELM_VERSION="${VLLM_EP_HELM_VERSION:-3.22.0}"

log() { printf '[helm-bin] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

semver_re='^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$'
[[ "$HELM_VERSION" =~ $semver_re ]] || die "bad helm version '$HELM_VERSION' (want e.g. 3.22.0)"
[[ "$HELM_VERSION" == 3.* ]] || die "helm version must be 3.x (module helm.sh/helm/v3), got '$HELM_VERSION'"

# has_bin DIR: the executable is present in DIR.
has_bin() {
    [[ -f "$1/helm" && -x "$1/helm" ]]
}

# bin_ok DIR: helm runs and reports the pinned version.
bin_ok() {
    local dir="$1" out
    has_bin "$dir" || return 1
    out="$("$dir/helm" version --template '{{.Version}}' 2>/dev/null)" || return 1
    [[ "$out" == "v$HELM_VERSION" ]] || return 1
}

# 1. An explicit helm.
if [[ -n "${HELM_BIN_DIR:-}" ]]; then
    if has_bin "$HELM_BIN_DIR"; then
        log "using HELM_BIN_DIR=$HELM_BIN_DIR"
        printf '%s\n' "$HELM_BIN_DIR"
        exit 0
    fi
    log "HELM_BIN_DIR=$HELM_BIN_DIR has no helm executable; using the cache"
fi

# 2. Cache hit, without taking the lock.
cache_root="${XDG_CACHE_HOME:-${HOME:?set HOME or XDG_CACHE_HOME}/.cache}/vllm-ep-webhook/helm"
dest="$cache_root/$HELM_VERSION"
if bin_ok "$dest"; then
    printf '%s\n' "$dest"
    exit 0
fi

# 3. Build, under the lock, into a temp dir beside the cache entry.
source "$(dirname "${BASH_SOURCE[0]}")/lib/build-cache.sh"
ensure_build_tools "helm v$HELM_VERSION"
lock_or_done bin_ok
start_build

helm_mod=helm.sh/helm/v3
mkdir -p "$tmp/helm"
(
    cd "$tmp/helm"
    log "helm: fetching $helm_mod@v$HELM_VERSION"
    info="$(go mod download -json "$helm_mod@v$HELM_VERSION")"
    upstream_mod="$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
    [[ -f "$upstream_mod" ]] || die "could not find the go.mod of $helm_mod@v$HELM_VERSION"

    # The Kubernetes version helm assumes without a cluster: one above the
    # release's k8s.io/client-go v0.<minor>, as helm's Makefile computes it.
    client_go="$(awk '$1 == "k8s.io/client-go" && $2 ~ /^v0\./ { print $2; exit }' "$upstream_mod")"
    [[ "$client_go" =~ ^v0\.([0-9]+)\. ]] || die "no k8s.io/client-go requirement in $upstream_mod"
    k8s_minor="${BASH_REMATCH[1]}"

    {
        printf 'module vllm-ep-webhook.local/helm-bin\n\n'
        # Same language version and GODEBUG defaults as the release's own build.
        awk '/^go[[:space:]]/ { print; print "" }' "$upstream_mod"
        awk '/^godebug[[:space:]]*\(/ { blk = 1 } blk || /^godebug[[:space:]]/ { print } blk && /\)/ { blk = 0 }' "$upstream_mod"
    } >go.mod
    if grep -qE '^replace([[:space:]]|\()' "$upstream_mod"; then
        log "helm: warning: $helm_mod@v$HELM_VERSION has replace directives, which a dependent build ignores"
    fi

    log "helm: resolving dependencies (client-go $client_go)"
    go get "$helm_mod/cmd/helm@v$HELM_VERSION" >&2

    ldflags="-s -w"
    ldflags+=" -X $helm_mod/internal/version.version=v$HELM_VERSION"
    ldflags+=" -X $helm_mod/internal/version.gitTreeState=clean"
    for pkg in "$helm_mod/pkg/lint/rules" "$helm_mod/pkg/chartutil"; do
        ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
    done
    log "helm: go build (a few minutes on 2 cores from a cold Go build cache)"
    go build -trimpath -ldflags "$ldflags" -o "$out/helm" "$helm_mod/cmd/helm"
)
log "helm: done after $((SECONDS - start))s"

bin_ok "$out" || die "the built helm does not report v$HELM_VERSION"
finish_build
