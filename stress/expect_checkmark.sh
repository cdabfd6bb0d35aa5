#!/bin/sh
# The checkmark negative control (issue #4): with half of the write barrier disabled
# (CGC_DEBUG_BARRIER=no-insertion), the collector loses objects, and CGC_CHECKMARK=1 must
# say so — the driver must die with the checkmark's message, not pass and not fail some
# other way. Usage: expect_checkmark.sh GC_STRESS [args...]
out=$(CGC_DEBUG_BARRIER=no-insertion CGC_CHECKMARK=1 CGC_CLOBBER=1 "$@" 2>&1)
rc=$?
if [ $rc -eq 0 ]; then
  echo "$out" | tail -3
  echo "FAIL: the driver passed with half the barrier disabled: checkmark caught nothing"
  exit 1
fi
if ! echo "$out" | grep -q '^cgc: checkmark: object .* was not marked'; then
  echo "$out" | tail -5
  echo "FAIL: the driver failed (exit $rc) but not by checkmark"
  exit 1
fi
echo "$out" | grep '^cgc: checkmark:'
echo "ok: checkmark caught the missing insertion barrier (exit $rc)"
