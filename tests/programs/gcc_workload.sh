#!/bin/sh
# Generates a moderately large C file (and a small C++ one), compiles them with -O2
# (cc1/cc1plus/as/ld are all preloaded too), then prints the object's symbols, its
# checksum (gcc output does not depend on heap addresses), and the programs' output.
set -eu
for p in gcc g++ nm sha256sum; do
    command -v $p >/dev/null || { echo "$p is missing (the Makefile installs it)" >&2; exit 1; }
done
dir=$(mktemp -d "${TMPDIR:-/tmp}/cgc-gcc.XXXXXX")
trap 'rm -rf "$dir"' EXIT
cd "$dir"   # relative file names so nothing path-dependent ends up in the output

# 300 functions with switches, loops and local arrays: plenty of GIMPLE/RTL to allocate.
awk 'BEGIN {
  print "#include <stdio.h>\n#include <string.h>"
  for (f = 0; f < 300; f++) {
    printf "static unsigned fn%d(unsigned x) {\n  unsigned a[16]; memset(a, 0, sizeof a);\n", f
    printf "  for (unsigned i = 0; i < 16; i++) a[i] = x * %du + i;\n", f * 2 + 1
    print  "  switch (x % 8) {"
    for (c = 0; c < 8; c++) printf "  case %d: x = (x << %d) ^ a[%d] ^ %du; break;\n", c, c % 5 + 1, (c + f) % 16, f * 31 + c
    print  "  }"
    if (f > 0) printf "  return x + (x & 1 ? fn%d(x >> 3) : a[x %% 16]);\n}\n", f - 1
    else print "  return x;\n}"
  }
  print "int main(void) {\n  unsigned s = 0;"
  for (f = 0; f < 300; f += 7) printf "  s += fn%d(%du);\n", f, f * 977
  print "  printf(\"sum %u\\n\", s);\n  return 0;\n}"
}' > big.c

cat > small.cc <<'CXX'
#include <cstdio>
#include <map>
#include <string>
#include <vector>
int main() {
    std::map<std::string, std::vector<int>> m;
    for (int i = 0; i < 1000; i++) m["k" + std::to_string(i % 97)].push_back(i);
    long s = 0;
    for (auto &kv : m) s += static_cast<long>(kv.first.size() * kv.second.size());
    std::printf("cxx %ld %zu\n", s, m.size());
}
CXX

gcc -O2 -c big.c -o big.o
gcc big.o -o big
nm big.o
sha256sum big.o
./big
g++ -O2 small.cc -o small
./small
