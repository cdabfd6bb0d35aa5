#!/bin/sh
# memcheck_gcc.sh — gcc compiling a small C file, for memcheck_compare.py: -pipe and
# relative names keep every process's command line the same from run to run (no temp
# file names), so cgc's and memcheck's reports can be matched process by process.
set -eu
dir=$(mktemp -d "${TMPDIR:-/tmp}/cgc-mcgcc.XXXXXX")
trap 'rm -rf "$dir"' EXIT
cd "$dir"
cat > small.c <<'C'
#include <stdio.h>
#include <string.h>
struct item { int k; char name[32]; struct item *next; };
static int hash(const char *s) { int h = 0; while (*s) h = h * 31 + *s++; return h; }
int lookup(struct item **tab, const char *name) {
    for (struct item *i = tab[hash(name) & 63]; i; i = i->next)
        if (strcmp(i->name, name) == 0) return i->k;
    return -1;
}
int main(void) { struct item *tab[64] = {0}; printf("%d\n", lookup(tab, "x")); return 0; }
C
gcc -pipe -O2 -c small.c -o small.o
echo compiled
