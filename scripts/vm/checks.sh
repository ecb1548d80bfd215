# Check helpers shared by the guest scenarios of scripts/vm-test: sourced by
# scripts/vm/init (busybox sh) and scripts/vm/systemd-test (bash), so plain
# POSIX sh. The sourcing script sets MARK, the prefix of every line
# (VM-TEST, SYSTEMD-TEST); the host looks for "$MARK: PASS".

FAILS=0
T0=$(cut -d. -f1 /proc/uptime)

say() { echo "$MARK: [$(($(cut -d. -f1 /proc/uptime) - T0))s] $*"; }
ok() { say "ok   $*"; }
fail() { say "FAIL $*"; FAILS=$((FAILS + 1)); }
check() { # check DESCRIPTION CMD...: ok if CMD succeeds
    what=$1
    shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}
# wait_until SECONDS CMD...: retries CMD twice a second until it succeeds.
wait_until() {
    limit=$(($(cut -d. -f1 /proc/uptime) + $1))
    shift
    until "$@"; do
        [ "$(cut -d. -f1 /proc/uptime)" -lt "$limit" ] || return 1
        sleep 0.5
    done
}
gt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 > b + 0) }'; }

# verdict: "$MARK: PASS" or "$MARK: FAILED (n checks)" on the console, and
# the result to QEMU's isa-debug-exit port (0 = pass), which ends the VM.
verdict() {
    if [ "$FAILS" -eq 0 ]; then
        echo "$MARK: PASS"
        code='\000'
    else
        echo "$MARK: FAILED ($FAILS checks)"
        code='\001'
    fi
    sync
    printf "$code" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
}
