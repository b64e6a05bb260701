#!/usr/bin/env bash
# report-crds.sh - the policy report CRDs for the end-to-end tests of the audit's reports.
#
#   dir="$(scripts/report-crds.sh)"   # a folder holding openreports/ and wgpolicy/
#
# Only that path goes to stdout (as the last line); progress goes to stderr.
#
#   openreports/  config/crd of github.com/openreports/reports-api (openreports.io/v1alpha1
#                 Report and ClusterReport)
#   wgpolicy/     the wgpolicyk8s.io_* files of config/crds/policyreport of github.com/kyverno/kyverno
#                 (wgpolicyk8s.io/v1alpha2 PolicyReport and ClusterPolicyReport; the Policy WG's own
#                 module, sigs.k8s.io/wg-policy-prototypes, is not served by the module proxy)
#   VERSION       the module versions
#
# Cached in ${XDG_CACHE_HOME:-$HOME/.cache}/vllm-ep-webhook/report-crds-<versions>/, downloaded
# from the Go module proxy only (`go mod download`), under an flock, renamed into place in one step.
# Versions: VLLM_EP_OPENREPORTS_VERSION, VLLM_EP_KYVERNO_VERSION. Nothing here is committed to the repo.
set -euo pipefail

OPENREPORTS_VERSION="${VLLM_EP_OPENREPORTS_VERSION:-0.2.1}"
KYVERNO_VERSION="${VLLM_EP_KYVERNO_VERSION:-1.19.1}"
openreports_mod=github.com/openreports/reports-api
kyverno_mod=github.com/kyverno/kyverno

log() { printf '[report-crds] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

semver_re='^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$'
for v in "$OPENREPORTS_VERSION" "$KYVERNO_VERSION"; do
    [[ "$v" =~ $semver_re ]] || die "bad version '$v' (want e.g. 0.2.1)"
done
stamp="openreports v$OPENREPORTS_VERSION kyverno v$KYVERNO_VERSION"

# crds_ok DIR: both folders of the pinned versions are there.
crds_ok() {
    [[ -f "$1/VERSION" && "$(head -n1 "$1/VERSION")" == "$stamp" ]] || return 1
    ls "$1"/openreports/*.yaml >/dev/null 2>&1 && ls "$1"/wgpolicy/*.yaml >/dev/null 2>&1
}

cache_root="${XDG_CACHE_HOME:-${HOME:?set HOME or XDG_CACHE_HOME}/.cache}/vllm-ep-webhook"
dest="$cache_root/report-crds-$OPENREPORTS_VERSION-$KYVERNO_VERSION"
if crds_ok "$dest"; then
    printf '%s\n' "$dest"
    exit 0
fi

source "$(dirname "${BASH_SOURCE[0]}")/lib/build-cache.sh"
ensure_build_tools "the report CRDs"
lock_or_done crds_ok
start_build
use_module_proxy

log "fetching $openreports_mod@v$OPENREPORTS_VERSION"
openreports_dir="$(cd "$tmp" && module_dir "$openreports_mod@v$OPENREPORTS_VERSION")"
log "fetching $kyverno_mod@v$KYVERNO_VERSION"
kyverno_dir="$(cd "$tmp" && module_dir "$kyverno_mod@v$KYVERNO_VERSION")"

mkdir -p "$out/openreports" "$out/wgpolicy"
ls "$openreports_dir"/config/crd/openreports.io_*.yaml >/dev/null 2>&1 \
    || die "$openreports_mod@v$OPENREPORTS_VERSION has no config/crd/openreports.io_*.yaml"
cp "$openreports_dir"/config/crd/openreports.io_*.yaml "$out/openreports/"
ls "$kyverno_dir"/config/crds/policyreport/wgpolicyk8s.io_*.yaml >/dev/null 2>&1 \
    || die "$kyverno_mod@v$KYVERNO_VERSION has no config/crds/policyreport/wgpolicyk8s.io_*.yaml"
cp "$kyverno_dir"/config/crds/policyreport/wgpolicyk8s.io_*.yaml "$out/wgpolicy/"
chmod -R u+w,go+rX "$out"
printf '%s\n' "$stamp" >"$out/VERSION"
crds_ok "$out" || die "incomplete CRDs in $out"
finish_build
