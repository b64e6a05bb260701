# build-cache.sh - shared by k8s-bins.sh, helm-bin.sh, kserve-bins.sh and report-crds.sh: build Go tools once into a
# per-version cache folder, under a lock, and move the result into place atomically.
# Source it after defining `log` and `die`. Sets/uses the globals dest, tmp, out, start.

apt_updated=0
ensure_cmd() { # ensure_cmd COMMAND DEBIAN-PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    command -v apt-get >/dev/null 2>&1 || die "'$1' is missing (Debian package $2)"
    [[ "$(id -u)" == 0 ]] || die "'$1' is missing; install the Debian package $2"
    log "installing $2 for '$1'"
    if [[ "$apt_updated" == 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >&2
}

# ensure_build_tools WHAT: flock, awk, CA certificates, and Go (needed by WHAT).
ensure_build_tools() {
    ensure_cmd flock util-linux
    ensure_cmd awk mawk
    command -v go >/dev/null 2>&1 || die "Go is required ($1 needs a recent Go toolchain)"
    if [[ ! -e /etc/ssl/certs/ca-certificates.crt ]] && command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
        ensure_cmd update-ca-certificates ca-certificates
    fi
}

# lock_or_done CHECK: take the per-entry lock for $dest; if the run that held it
# already built a good entry (CHECK "$dest" succeeds), print it and exit.
lock_or_done() {
    mkdir -p "$(dirname "$dest")"
    exec 9>"$dest.lock"
    if ! flock -n 9; then
        log "another run is building $dest; waiting for it"
        flock 9
    fi
    if "$1" "$dest"; then
        log "built by a concurrent run"
        printf '%s\n' "$dest"
        exit 0
    fi
}

# start_build: a fresh temp dir beside $dest (removing leftovers of runs killed
# outright), removed again on exit; $out is where the binaries go.
start_build() {
    local prefix old
    prefix="$(dirname "$dest")/.build-$(basename "$dest")."
    # Builds only happen under the lock, so a temp dir for this entry that is
    # still there now was left by a run killed outright (SIGKILL, power loss).
    for old in "$prefix"*; do
        [[ -d "$old" ]] || continue
        log "removing leftovers of an interrupted build: $old"
        rm -rf "$old"
    done
    tmp="$(mktemp -d "${prefix}XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    out="$tmp/out"
    mkdir -p "$out"
    # Our own settings for every go command: a module-mode build that may update
    # the throwaway go.mod/go.sum, never a workspace, a static binary.
    export GO111MODULE=on GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0
    start=$SECONDS
    log "building into $tmp with $(go version)"
}

# finish_build: swap $out into place as $dest and print it. A stale or broken
# entry is moved aside first, then the new folder is renamed in one step (same
# filesystem), so readers never see half.
finish_build() {
    chmod 0755 "$out" "$out"/*
    if [[ -e "$dest" || -L "$dest" ]]; then
        mv -T "$dest" "$tmp/stale"
    fi
    mv -T "$out" "$dest"
    log "cached in $dest ($(du -sh "$dest" | cut -f1), built in $((SECONDS - start))s)"
    printf '%s\n' "$dest"
}

# use_module_proxy: modules come from the module proxy only, with no fallback to fetching from version control.
use_module_proxy() {
    GOPROXY="$(go env GOPROXY)"
    GOPROXY="${GOPROXY%,direct}"
    GOPROXY="${GOPROXY%|direct}"
    [[ -n "$GOPROXY" && "$GOPROXY" != direct && "$GOPROXY" != off ]] || die "GOPROXY must name a module proxy, not '$GOPROXY'"
    export GOPROXY
}

# module_dir MODULE@VERSION: download a module (proxy only) and print its folder.
module_dir() {
    local info dir
    info="$(go mod download -json "$1")" || die "could not download $1"
    dir="$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
    [[ -d "$dir" ]] || die "no module folder for $1"
    printf '%s\n' "$dir"
}
