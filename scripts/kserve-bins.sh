#!/usr/bin/env bash
# kserve-bins.sh - KServe's controllers and manifests for the end-to-end tests.
#
#   dir="$(scripts/kserve-bins.sh)"            # a folder holding `manager` and `llmisvc`
#   cfg="$(scripts/kserve-bins.sh --config)"   # a folder holding KServe's manifests (below)
#
# Only that path goes to stdout (as the last line); progress goes to stderr.
#
# Binaries, resolution order:
#   1. $VLLM_EP_KSERVE_BINS, if it names a folder with executables `manager`
#      and `llmisvc`: printed as is, nothing built (their version is not checked).
#   2. The per-version cache
#        ${XDG_CACHE_HOME:-$HOME/.cache}/vllm-ep-webhook/kserve-v<version>/
#      reused when both binaries are there with the stamp of the pinned version.
#   3. Otherwise both are built from the Go module proxy (no other download
#      source is used): `go install github.com/kserve/kserve/cmd/manager@v…`
#      is refused because KServe's go.mod has replace directives, so the module
#      is downloaded (`go mod download`), copied to a writable temp folder and
#      built there with its own go.mod (`go build ./cmd/manager ./cmd/llmisvc`),
#      under an flock so that concurrent runs build once, and renamed into
#      place in one step.
#
# Manifests (--config), cached in .../kserve-v<version>-config/ the same way,
# copied from the downloaded modules (no build needed, so prebuilt binaries
# still get them):
#   crd/           KServe's config/crd/full (every CRD, served versions, schemas)
#   llmisvcconfig/ KServe's config/llmisvcconfig (LLMInferenceServiceConfig presets)
#   webhook/       KServe's config/webhook (its admission webhook manifests)
#   lws-crd/       config/crd/bases of sigs.k8s.io/lws at the version KServe requires
#   VERSION        the KServe and lws module versions
#
# Version (override with VLLM_EP_KSERVE_VERSION): module github.com/kserve/kserve.
set -euo pipefail

KSERVE_VERSION="${VLLM_EP_KSERVE_VERSION:-0.20.0}"
kserve_mod=github.com/kserve/kserve
lws_mod=sigs.k8s.io/lws

log() { printf '[kserve-bins] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

mode=bins
case "${1:-}" in
    "") ;;
    --config) mode=config ;;
    *) die "usage: $0 [--config]" ;;
esac

semver_re='^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$'
[[ "$KSERVE_VERSION" =~ $semver_re ]] || die "bad KServe version '$KSERVE_VERSION' (want e.g. 0.20.0)"

stamp="kserve v$KSERVE_VERSION"

# has_bins DIR: both executables are present in DIR.
has_bins() {
    [[ -f "$1/manager" && -x "$1/manager" && -f "$1/llmisvc" && -x "$1/llmisvc" ]]
}

# bins_ok DIR: both executables are there, built from the pinned version.
bins_ok() {
    has_bins "$1" && [[ -f "$1/VERSION" && "$(head -n1 "$1/VERSION")" == "$stamp" ]]
}

# config_ok DIR: the manifests of the pinned version are there.
config_ok() {
    [[ -f "$1/VERSION" && "$(head -n1 "$1/VERSION")" == "$stamp" ]] || return 1
    local d
    for d in crd llmisvcconfig webhook lws-crd; do
        [[ -d "$1/$d" ]] || return 1
    done
}

cache_root="${XDG_CACHE_HOME:-${HOME:?set HOME or XDG_CACHE_HOME}/.cache}/vllm-ep-webhook"

if [[ "$mode" == bins ]]; then
    # 1. Prebuilt binaries.
    if [[ -n "${VLLM_EP_KSERVE_BINS:-}" ]]; then
        if has_bins "$VLLM_EP_KSERVE_BINS"; then
            log "using VLLM_EP_KSERVE_BINS=$VLLM_EP_KSERVE_BINS"
            printf '%s\n' "$VLLM_EP_KSERVE_BINS"
            exit 0
        fi
        log "VLLM_EP_KSERVE_BINS=$VLLM_EP_KSERVE_BINS lacks manager and/or llmisvc; using the cache"
    fi
    dest="$cache_root/kserve-v$KSERVE_VERSION"
    check=bins_ok
else
    dest="$cache_root/kserve-v$KSERVE_VERSION-config"
    check=config_ok
fi

# 2. Cache hit, without taking the lock.
if "$check" "$dest"; then
    printf '%s\n' "$dest"
    exit 0
fi

# 3. Build, under the lock, into a temp dir beside the cache entry.
source "$(dirname "${BASH_SOURCE[0]}")/lib/build-cache.sh"
ensure_build_tools "KServe v$KSERVE_VERSION"
lock_or_done "$check"
start_build
use_module_proxy

log "fetching $kserve_mod@v$KSERVE_VERSION"
src_ro="$(cd "$tmp" && module_dir "$kserve_mod@v$KSERVE_VERSION")"

if [[ "$mode" == config ]]; then
    lws_version="$(awk '$1 == "'"$lws_mod"'" && $2 ~ /^v/ { print $2; exit }' "$src_ro/go.mod")"
    [[ -n "$lws_version" ]] || die "no $lws_mod requirement in KServe's go.mod"
    log "fetching $lws_mod@$lws_version (KServe's requirement)"
    lws_dir="$(cd "$tmp" && module_dir "$lws_mod@$lws_version")"
    for pair in "config/crd/full:crd" "config/llmisvcconfig:llmisvcconfig" "config/webhook:webhook"; do
        from="$src_ro/${pair%%:*}"
        [[ -d "$from" ]] || die "KServe v$KSERVE_VERSION has no ${pair%%:*}"
        cp -R "$from" "$out/${pair##*:}"
    done
    [[ -d "$lws_dir/config/crd/bases" ]] || die "$lws_mod@$lws_version has no config/crd/bases"
    cp -R "$lws_dir/config/crd/bases" "$out/lws-crd"
    chmod -R u+w,go+rX "$out"
    printf '%s\nlws %s\n' "$stamp" "$lws_version" >"$out/VERSION"
    config_ok "$out" || die "incomplete manifests in $out"
    finish_build
    exit 0
fi

# The module cache is read-only; building there would also write go.sum.
cp -R "$src_ro" "$tmp/src"
chmod -R u+w "$tmp/src"

(
    cd "$tmp/src"
    # KServe's own go.mod and go.sum, so its replace directives apply.
    for cmd in manager llmisvc; do
        log "$cmd: go build ./cmd/$cmd (minutes: about 15 for both on 2 busy cores from a cold Go build cache)"
        go build -trimpath -ldflags "-s -w" -o "$out/$cmd" "./cmd/$cmd"
        log "$cmd: done after $((SECONDS - start))s"
    done
)
printf '%s\n' "$stamp" >"$out/VERSION"
bins_ok "$out" || die "the build of KServe v$KSERVE_VERSION did not produce manager and llmisvc"
finish_build
