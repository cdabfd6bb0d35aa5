#!/bin/sh
# The README shows examples/embed.c in full; fail if the two copies differ.
set -eu
readme=$1
src=$2
sed -n '/<!-- embed.c begin -->/,/<!-- embed.c end -->/p' "$readme" | sed '1,2d;$d' | sed '$d' > "${TMPDIR:-/tmp}/readme_embed.$$.c"
if ! diff -u "$src" "${TMPDIR:-/tmp}/readme_embed.$$.c"; then
  echo "README.md's copy of examples/embed.c is out of date" >&2
  rm -f "${TMPDIR:-/tmp}/readme_embed.$$.c"
  exit 1
fi
rm -f "${TMPDIR:-/tmp}/readme_embed.$$.c"
echo "README copy matches $src"
