#!/bin/sh
# bdw_check.sh BDWDIR w3m|guile SRCDIR — run a Debian program that uses the Boehm GC twice,
# on the Boehm GC (libgc.so.1 as installed) and on cgc (LD_LIBRARY_PATH=BDWDIR, where
# libgc.so.1 is cgc's libcgc-bdw.so), and require byte-identical output and exit status.
# CGC_STATS=1 on the cgc run proves cgc was loaded and collected (its exit report must show
# at least one cycle). Exit 77 (meson: skipped) only when the program is not installed.
set -u
bdw=$1 what=$2 src=$3
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0

need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "SKIP: $1 is not installed (Debian package $2; 'make deps' installs it)"
    exit 77
  fi
}

# run NAME CMD... : compare the two runs
run() {
  name=$1; shift
  "$@" >"$tmp/$name.boehm" 2>"$tmp/$name.boehm.err"; rb=$?
  LD_LIBRARY_PATH="$bdw${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" CGC_STATS=1 "$@" \
    >"$tmp/$name.cgc" 2>"$tmp/$name.cgc.err"; rc=$?
  cycles=$(sed -n 's/^cgc: stats: collector: \([0-9]*\) cycles.*/\1/p' "$tmp/$name.cgc.err")
  if [ "$rb" != "$rc" ]; then
    echo "FAIL $name: exit status $rc on cgc, $rb on the Boehm GC"; fail=1
  elif ! cmp -s "$tmp/$name.boehm" "$tmp/$name.cgc"; then
    echo "FAIL $name: output differs"; diff "$tmp/$name.boehm" "$tmp/$name.cgc" | head -20; fail=1
  elif [ -z "$cycles" ] || [ "$cycles" -lt 1 ]; then
    echo "FAIL $name: no cgc collection seen (was cgc loaded?)"; fail=1
  else
    echo "ok   $name: $(wc -c <"$tmp/$name.cgc") bytes identical, exit $rc, $cycles cgc cycles"
  fi
  if [ $fail = 1 ]; then echo "--- cgc stderr:"; tail -20 "$tmp/$name.cgc.err"; fi
}

case $what in
w3m)
  need w3m w3m
  sh "$src/make_page.sh" 20000 >"$tmp/page.html"
  run w3m-dump w3m -dump -T text/html -cols 120 "$tmp/page.html"
  ;;
guile)
  need guile guile-3.0
  for f in trees lists hashes weak threads; do
    run "guile-$f" guile --no-auto-compile "$src/$f.scm"
  done
  ;;
*) echo "usage: $0 BDWDIR w3m|guile SRCDIR"; exit 2 ;;
esac
exit $fail
