#!/bin/sh
# options_known.sh README PROGRAM — every CGC_* variable README's "Options" section
# documents must be known to the library: with each one set, PROGRAM (a cgc program) must not
# print "unknown option" for it. (CGC_STOPTHEWORLD and CGC_DEBUG_BARRIER were read by the
# collector but missing from the allocator's list, so setting them printed a warning that
# said the option was ignored while it was not.) The value is each option's documented
# default (the table's second column), so the run behaves as without it.
set -u
readme=$1 prog=$2
opts=$(sed -n '/^## Options/,/^### /p' "$readme" | grep '^| `CGC_' |
       sed 's/^| `\(CGC_[A-Z_]*\)` | `\([^`]*\)`.*/\1=\2/;t;s/^| `\(CGC_[A-Z_]*\)` |.*/\1=/')
[ -n "$opts" ] || { echo "FAIL: no options found in $readme"; exit 1; }
n=0
for kv in $opts; do
  name=${kv%%=*}
  case $name in CGC_LEAKS*) continue ;; esac # leak mode runs only under LD_PRELOAD
  out=$(env "$kv" "$prog" 2>&1 >/dev/null)
  if printf '%s\n' "$out" | grep -q "unknown option $name"; then
    echo "FAIL: $name is documented but the library calls it unknown"; exit 1
  fi
  n=$((n + 1))
done
[ "$n" -ge 15 ] || { echo "FAIL: only $n options checked"; exit 1; }
echo "ok: $n documented options, none unknown"
