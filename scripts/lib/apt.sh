# Debian packages from a moving archive, for scripts/setup, vm-test and
# build-aarch64 (sourced, not run).
#
# Security updates and point releases replace package versions and the old
# files vanish, so nothing here pins a version or a .deb's sha256: we take
# what apt's current, signed package lists name as the candidate (apt checks
# the download against them) and print it. Where the bytes of a file inside
# a package matter (the test photos), the caller checks that file's sha256
# after unpacking.
#
#   apt_version PKG[:ARCH]          sets APT_VERSION: the candidate (lists updated once if none)
#   apt_fetch DIR PKG[:ARCH] [VER]  sets APT_DEB: the .deb in DIR, downloaded unless cached
#   apt_update                      refreshes the lists, once per run
#
# Results come in variables, not on stdout: a $(...) subshell would forget
# that the lists were refreshed. The caller defines say and die.

APT_UPDATED=0

# apt_update: refresh the package lists once per run.
apt_update() {
    [[ "$APT_UPDATED" == 1 ]] && return 0
    APT_UPDATED=1
    [[ "$(id -u)" -eq 0 ]] || die "apt's package lists need refreshing: run 'sudo apt-get update' and try again"
    say "refreshing apt's package lists (apt-get update)"
    apt-get update -qq >/dev/null 2>&1 || die "apt-get update failed"
}

# apt_candidate PKG: the candidate version in the lists as they are, or nothing.
apt_candidate() {
    LC_ALL=C apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '^(none)$' || true
}

apt_version() {
    APT_VERSION="$(apt_candidate "$1")"
    if [[ -z "$APT_VERSION" ]]; then
        apt_update
        APT_VERSION="$(apt_candidate "$1")"
    fi
    [[ -n "$APT_VERSION" ]] || die "apt knows no package $1 (is this a Debian bookworm machine with its usual sources?)"
}

# apt_cached DIR PKG VERSION: the cached .deb of exactly that version, if any.
apt_cached() {
    local name="${2%%:*}" arch=""
    [[ "$2" == *:* ]] && arch="${2#*:}"
    # apt-get download names files NAME_VERSION_ARCH.deb with ':' as %3a.
    ls "$1/${name}_${3//:/%3a}_${arch:-}"*.deb 2>/dev/null | head -n1 || true
}

apt_fetch() {
    local dir="$1" pkg="$2" ver="${3:-}" deb
    [[ -n "$ver" ]] || { apt_version "$pkg"; ver="$APT_VERSION"; }
    mkdir -p "$dir"
    deb="$(apt_cached "$dir" "$pkg" "$ver")"
    if [[ -z "$deb" ]]; then
        # Old lists may name a version the archive has dropped: download
        # only with fresh ones, resolving again.
        apt_update
        [[ -n "${3:-}" ]] || { apt_version "$pkg"; ver="$APT_VERSION"; }
        deb="$(apt_cached "$dir" "$pkg" "$ver")"
    fi
    if [[ -z "$deb" ]]; then
        say "downloading $pkg=$ver with apt-get"
        (cd "$dir" && apt-get download -o APT::Sandbox::User=root "$pkg=$ver" >/dev/null) ||
            die "apt-get could not download $pkg=$ver"
        deb="$(apt_cached "$dir" "$pkg" "$ver")"
        [[ -n "$deb" ]] || die "apt-get download of $pkg=$ver left no .deb in $dir"
    fi
    APT_DEB="$deb"
}
