#!/bin/sh
# cgc-run: --help documents every option; bad options and values get a clear message and
# exit 2; each option reaches the program as its CGC_* variable with libcgc.so preloaded; and
# the issue's example: `cgc-run --leaks collect --trace t.json -- python3 -c ...` runs and
# `cgc-trace t.json` summarises it; a collected-heap program run through cgc-run --trace
# leaves a trace whose cycles cgc-trace counts.
# usage: test_cgc_run.sh CGC_RUN CGC_TRACE TRACE_DEMO WORKDIR
set -u
abs() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
run=$(abs "$1") trace=$(abs "$2") demo=$(abs "$3") work=$4
mkdir -p "$work" && cd "$work" || exit 1
fail=0
bad() { echo "FAIL: $*"; fail=1; }

out=$("$run" --help) || bad "--help exit $?"
for o in --trace --leaks --gc-percent --memory-limit --lib CGC_TRACE_FILE CGC_LEAKS \
         CGC_GC_PERCENT CGC_MEMORY_LIMIT; do
    printf '%s' "$out" | grep -q -- "$o" || bad "--help does not mention $o"
done

expect_error() { # expected-message args...
    msg=$1; shift
    err=$("$run" "$@" 2>&1 >/dev/null); rc=$?
    [ $rc = 2 ] || bad "cgc-run $*: exit $rc, want 2"
    printf '%s' "$err" | grep -q -- "$msg" || bad "cgc-run $*: message '$err' lacks '$msg'"
}
expect_error "unknown option '--bogus'" --bogus -- true
expect_error "--leaks takes 'report' or 'collect'" --leaks maybe -- true
expect_error "--gc-percent takes a number" --gc-percent 5x -- true
expect_error "--memory-limit takes a size" --memory-limit 12Q -- true
expect_error "needs a value" --trace
expect_error "no program to run" --gc-percent 50

got=$("$run" --trace t0.json --leaks report --gc-percent=50 --memory-limit 64M -- \
      sh -c 'echo "$CGC_TRACE_FILE|$CGC_LEAKS|$CGC_GC_PERCENT|$CGC_MEMORY_LIMIT|$LD_PRELOAD"' 2>/dev/null)
case $got in
    "t0.json|report|50|64M|"/*libcgc.so*) ;;
    *) bad "variables seen by the program: '$got'" ;;
esac
lib=${got##*|}
[ -f "$lib" ] || bad "LD_PRELOAD names '$lib', which does not exist"

py=/usr/bin/python3; [ -x $py ] || py=python3
rm -f t.json
got=$(CGC_STATS=1 "$run" --leaks collect --trace t.json -- $py -c 'print(sum(len(str(i)) for i in range(10**5)))' 2>py.err)
[ "$got" = 488890 ] || bad "python under cgc-run printed '$got'"
grep -q "cgc: stats: pid" py.err || bad "python did not run on cgc (no CGC_STATS line): $(cat py.err)"
"$trace" t.json > t.summary || bad "cgc-trace t.json exit $?"
grep -q "^stops: " t.summary || bad "cgc-trace t.json: no summary: $(cat t.summary)"

rm -f d.json
"$run" --trace d.json --gc-percent 50 -- "$demo" --threads 2 --ms 150 > d.out || bad "trace_demo exit $?"
cycles=$(sed -n 's/^cycles \([0-9]*\) .*/\1/p' d.out)
"$trace" --json d.json > d.summary || bad "cgc-trace d.json exit $?"
grep -q "\"cycles\":$cycles," d.summary || bad "cgc-trace counts other cycles than the program ($cycles): $(cat d.summary)"
[ "${cycles:-0}" -gt 0 ] || bad "trace_demo collected nothing"

# --bdw: a program linked against the Boehm GC's libgc.so.1 runs on libcgc-bdw.so (found in
# the build tree, and through a private directory when given elsewhere with --lib).
expect_error "--leaks is for cgc as malloc" --bdw --leaks report -- true
got=$("$run" --bdw -- sh -c 'echo "${LD_PRELOAD:-none}|$LD_LIBRARY_PATH"')
first=${got#none|}
first=${first%%:*}
bdwlib=$(readlink -f "$first/libgc.so.1")
case $got in
    "none|"/*) [ "${bdwlib##*/}" = libcgc-bdw.so ] ||
                   bad "--bdw: libgc.so.1 in '$first' is '$bdwlib', not libcgc-bdw.so" ;;
    *) bad "--bdw: the program saw '$got' (nothing may be preloaded; LD_LIBRARY_PATH first)" ;;
esac
if command -v guile >/dev/null 2>&1; then
    got=$(CGC_STATS=1 "$run" --bdw -- guile --no-auto-compile -c \
          '(display (length (let loop ((i 0) (l (quote ()))) (if (= i 300000) l (loop (+ i 1) (cons i l))))))' 2>g.err)
    [ "$got" = 300000 ] || bad "guile under cgc-run --bdw printed '$got': $(cat g.err)"
    grep -q "cgc: stats: collector: [1-9]" g.err || bad "guile did not collect on cgc: $(cat g.err)"
    mkdir -p other && cp "$bdwlib" other/ &&
    got=$(CGC_STATS=1 "$run" --bdw --lib other/libcgc-bdw.so -- guile --no-auto-compile -c '(display 7)' 2>g2.err)
    [ "$got" = 7 ] && grep -q "cgc: stats: pid" g2.err || bad "guile with --bdw --lib other/...: '$got' $(cat g2.err)"
else
    echo "cgc-run: guile is not installed: --bdw checked without a Boehm-GC program"
fi

[ $fail = 0 ] && echo "cgc-run: options, errors, python, a collected-heap program traced, --bdw"

exit $fail
