#!/bin/sh
# check_workload.sh PROGRAM [ARGS...]
#
# Runs PROGRAM twice — once with the C library's malloc, once with the library named by
# the LD_PRELOAD this script was started with (meson sets it to libcgc.so) — and fails
# unless both runs succeed and print the same stdout (the workloads print a checksum of
# everything they allocated, so a corrupted heap shows up as a different line).
#
# The preload is taken from our own environment and removed at once, so that only the
# workload runs under it (and a broken allocator is reported as a failing workload, not
# as a mysterious failure of sh/cmp).
set -u
PRELOAD=${LD_PRELOAD:-}
unset LD_PRELOAD
if [ -z "$PRELOAD" ]; then
    echo "check_workload.sh: LD_PRELOAD is not set (nothing to compare against)" >&2
    exit 2
fi
if [ $# -lt 1 ]; then
    echo "usage: LD_PRELOAD=lib.so check_workload.sh PROGRAM [ARGS...]" >&2
    exit 2
fi

tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT

"$@" >"$tmp/ref" || { echo "FAIL: reference run (no preload) exited $?: $*" >&2; exit 1; }
LD_PRELOAD="$PRELOAD" "$@" >"$tmp/out"
rc=$?
if [ $rc -ne 0 ]; then
    echo "FAIL: exit status $rc under LD_PRELOAD=$PRELOAD: $*" >&2
    exit 1
fi
if ! cmp -s "$tmp/ref" "$tmp/out"; then
    echo "FAIL: output differs under LD_PRELOAD=$PRELOAD: $*" >&2
    echo "  glibc:   $(cat "$tmp/ref")" >&2
    echo "  preload: $(cat "$tmp/out")" >&2
    exit 1
fi
echo "ok: $(cat "$tmp/out")"
