#!/usr/bin/env bash
# Installs edgevision as a systemd service from a built checkout (or from
# the bundle scripts/build-aarch64 makes), or removes it again.
#
#   scripts/install.sh [--prefix PREFIX] [--destdir DIR] [--arch ARCH] [--binary FILE]
#   scripts/install.sh [--prefix PREFIX] [--destdir DIR] --uninstall [--purge]
#
#   --prefix PREFIX  default /usr/local
#   --destdir DIR    stage into DIR (also DESTDIR=DIR in the environment);
#                    no user is created and systemd is not touched then
#   --arch ARCH      x86_64 or aarch64 (default: this machine's)
#   --binary FILE    the edgevision binary (default: target/release/edgevision,
#                    or target/aarch64-unknown-linux-gnu/release/edgevision
#                    for aarch64 on another machine)
#   --uninstall      remove what install put in place, except the config
#   --purge          with --uninstall: the config in /etc/edgevision and the
#                    edgevision user too
#
# Installs:
#   PREFIX/bin/edgevision
#   PREFIX/lib/edgevision/libLiteRt.so            (runtime/ARCH/libLiteRt.so)
#   PREFIX/lib/edgevision/libLiteRt.so.version    (its release, from scripts/setup)
#   PREFIX/share/edgevision/models/               (models and label files)
#   PREFIX/share/doc/edgevision/README.md
#   /etc/edgevision/edgevision.toml                (never overwritten)
#   /etc/systemd/system/edgevision.service
#   /etc/modules-load.d/edgevision.conf           (the camera subsystems at boot)
# and creates the system user `edgevision` (group video). Paths in the
# config and the unit are written for PREFIX. The labels' font comes from
# the system (Debian's fonts-dejavu-core; a note says when it is missing).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

PREFIX=/usr/local
DESTDIR="${DESTDIR:-}"
ARCH="$(uname -m)"
BINARY=""
MODE=install
PURGE=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --prefix) PREFIX="${2:?--prefix needs a directory}"; shift ;;
        --prefix=*) PREFIX="${1#*=}" ;;
        --destdir) DESTDIR="${2:?--destdir needs a directory}"; shift ;;
        --destdir=* | DESTDIR=*) DESTDIR="${1#*=}" ;;
        --arch) ARCH="${2:?--arch needs x86_64 or aarch64}"; shift ;;
        --arch=*) ARCH="${1#*=}" ;;
        --binary) BINARY="${2:?--binary needs a file}"; shift ;;
        --binary=*) BINARY="${1#*=}" ;;
        --uninstall) MODE=uninstall ;;
        --purge) PURGE=1 ;;
        -h | --help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done

say() { printf 'install.sh: %s\n' "$*" >&2; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

[[ "$PREFIX" == /* ]] || die "--prefix must be an absolute path: $PREFIX"
[[ -z "$DESTDIR" || "$DESTDIR" == /* ]] || DESTDIR="$(pwd)/$DESTDIR"
DESTDIR="${DESTDIR%/}"
[[ "$PURGE" == 0 || "$MODE" == uninstall ]] || die "--purge goes with --uninstall"
case "$ARCH" in
    x86_64 | amd64) ARCH=x86_64 ;;
    aarch64 | arm64) ARCH=aarch64 ;;
    *) die "unsupported architecture '$ARCH' (x86_64 or aarch64)" ;;
esac

BINDIR="$PREFIX/bin"
LIBDIR="$PREFIX/lib/edgevision"
SHAREDIR="$PREFIX/share/edgevision"
DOCDIR="$PREFIX/share/doc/edgevision"
CONFDIR=/etc/edgevision
UNITDIR=/etc/systemd/system
MODLOADDIR=/etc/modules-load.d
USER_NAME=edgevision
MODELS=(ssd_mobilenet_v2_coco_int8.tflite ssd_mobilenet_v2_coco_quant.tflite coco_labels.txt ssd_mobilenet_v2_oidv4_fp16.tflite oidv4_labels.txt README.md)

# Only a real install (no DESTDIR) touches users and the running systemd.
LIVE=0
[[ -z "$DESTDIR" ]] && LIVE=1
if [[ "$LIVE" == 1 && "$(id -u)" -ne 0 ]]; then
    die "run as root (sudo), or stage into a directory with --destdir"
fi
systemd_running() { [[ "$LIVE" == 1 && -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; }

# elf_machine FILE: x86_64 or aarch64, from the ELF header's e_machine.
elf_machine() {
    case "$(od -An -tx1 -j18 -N2 "$1" 2>/dev/null | tr -d ' \n')" in
        3e00) echo x86_64 ;;
        b700) echo aarch64 ;;
        *) echo unknown ;;
    esac
}

uninstall() {
    if systemd_running; then
        systemctl disable --now edgevision.service >/dev/null 2>&1 || true
    fi
    rm -f "$DESTDIR$BINDIR/edgevision" "$DESTDIR$UNITDIR/edgevision.service" "$DESTDIR$MODLOADDIR/edgevision.conf"
    rm -rf "$DESTDIR$LIBDIR" "$DESTDIR$SHAREDIR" "$DESTDIR$DOCDIR"
    if systemd_running; then
        systemctl daemon-reload
    fi
    if [[ "$PURGE" == 1 ]]; then
        rm -rf "$DESTDIR$CONFDIR" "$DESTDIR/var/lib/edgevision"
        if [[ "$LIVE" == 1 ]] && getent passwd "$USER_NAME" >/dev/null; then
            userdel "$USER_NAME" || say "could not remove the user $USER_NAME"
        fi
        say "removed edgevision and its config"
    else
        say "removed edgevision; the config stays in $DESTDIR$CONFDIR (--purge removes it)"
    fi
}

if [[ "$MODE" == uninstall ]]; then
    uninstall
    exit 0
fi

# --- what to install --------------------------------------------------------------
if [[ -z "$BINARY" ]]; then
    if [[ "$ARCH" == "$(uname -m)" ]]; then
        BINARY="$ROOT/target/release/edgevision"
        # A bundle from build-aarch64 keeps the cross-build path.
        [[ -f "$BINARY" ]] || BINARY="$ROOT/target/$ARCH-unknown-linux-gnu/release/edgevision"
    else
        BINARY="$ROOT/target/$ARCH-unknown-linux-gnu/release/edgevision"
    fi
fi
[[ -f "$BINARY" ]] || die "$BINARY not found: build it first (cargo build --release, or scripts/build-aarch64)"
[[ "$(elf_machine "$BINARY")" == "$ARCH" ]] ||
    die "$BINARY is not an $ARCH executable ($(elf_machine "$BINARY")); pass --arch or --binary"
RUNTIME="$ROOT/runtime/$ARCH/libLiteRt.so"
[[ -f "$RUNTIME" ]] || die "$RUNTIME not found: run scripts/setup$([[ "$ARCH" == aarch64 ]] && echo ' --aarch64')"
[[ "$(elf_machine "$RUNTIME")" == "$ARCH" ]] || die "$RUNTIME is not an $ARCH library"
for m in "${MODELS[@]}"; do
    [[ -f "$ROOT/models/$m" ]] || die "models/$m not found: run scripts/setup"
done

# --- files --------------------------------------------------------------------------
install -d -m 0755 "$DESTDIR$BINDIR" "$DESTDIR$LIBDIR" "$DESTDIR$SHAREDIR/models" "$DESTDIR$DOCDIR" \
    "$DESTDIR$UNITDIR" "$DESTDIR$CONFDIR" "$DESTDIR$MODLOADDIR"
install -m 0755 "$BINARY" "$DESTDIR$BINDIR/edgevision"
# The release build keeps debug info for profiling (57 MB; 10 MB without).
# strip is binutils': where it is missing or does not know the architecture,
# the binary is installed as it is.
if ! { command -v strip >/dev/null 2>&1 &&
    strip --strip-debug --strip-unneeded "$DESTDIR$BINDIR/edgevision" 2>/dev/null; }; then
    say "could not strip $DESTDIR$BINDIR/edgevision (binutils' strip missing?): installed with its debug info"
fi
install -m 0644 "$RUNTIME" "$DESTDIR$LIBDIR/libLiteRt.so"
# Its release, recorded by scripts/setup (the library exports none).
[[ -f "$RUNTIME.version" ]] && install -m 0644 "$RUNTIME.version" "$DESTDIR$LIBDIR/libLiteRt.so.version"
for m in "${MODELS[@]}"; do
    install -m 0644 "$ROOT/models/$m" "$DESTDIR$SHAREDIR/models/$m"
done
install -m 0644 "$ROOT/README.md" "$DESTDIR$DOCDIR/README.md"
# The shipped config and unit name /usr; point them at PREFIX.
sed -e "s#/usr/bin/edgevision#$BINDIR/edgevision#g" \
    -e "s#file:///usr/share/doc/edgevision/#file://$DOCDIR/#g" \
    "$ROOT/systemd/edgevision.service" >"$DESTDIR$UNITDIR/edgevision.service"
chmod 0644 "$DESTDIR$UNITDIR/edgevision.service"
install -m 0644 "$ROOT/systemd/modules-load.conf" "$DESTDIR$MODLOADDIR/edgevision.conf"
CONF="$DESTDIR$CONFDIR/edgevision.toml"
NEW_CONF=0
if [[ -e "$CONF" ]]; then
    say "keeping the existing $CONF"
else
    # It may hold passwords or tokens: readable by root and the service only.
    sed -e "s#\"/usr/lib/edgevision/#\"$LIBDIR/#g" \
        -e "s#\"/usr/share/edgevision/#\"$SHAREDIR/#g" \
        "$ROOT/config/edgevision.toml" >"$CONF"
    chmod 0640 "$CONF"
    NEW_CONF=1
fi

# --- the user and systemd ----------------------------------------------------------
if [[ "$LIVE" == 1 ]]; then
    if ! getent passwd "$USER_NAME" >/dev/null; then
        getent group video >/dev/null || groupadd --system video
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin --groups video --comment "edgevision daemon" "$USER_NAME"
        say "created the system user $USER_NAME (group video)"
    fi
    [[ "$NEW_CONF" == 0 ]] || chgrp "$USER_NAME" "$CONF"
    if systemd_running; then
        systemctl daemon-reload
        # The camera subsystems now rather than at the next boot.
        systemctl restart systemd-modules-load.service >/dev/null 2>&1 || true
        say "start it with: systemctl enable --now edgevision"
    fi
fi
say "installed edgevision ($ARCH) under $DESTDIR$PREFIX; config $CONF"
# The labels' font is the system's (stream.font), not installed here.
[[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf ]] ||
    say "note: DejaVu Sans is missing, so boxes are drawn without labels: apt-get install fonts-dejavu-core (or set stream.font)"
