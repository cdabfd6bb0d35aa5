#!/bin/sh
# Builds a repository of a few hundred generated files in a temp dir, commits twice
# with fixed identities and dates (so commit hashes are deterministic), repacks, and
# prints hashes, trees and a diff summary.
set -eu
command -v git >/dev/null || { echo "git is missing (the Makefile installs it)" >&2; exit 1; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/cgc-git.XXXXXX")
trap 'rm -rf "$dir"' EXIT
cd "$dir"

# Isolate from the user's and system configuration.
export HOME="$dir" GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME=cgc GIT_AUTHOR_EMAIL=cgc@example.invalid
export GIT_COMMITTER_NAME=cgc GIT_COMMITTER_EMAIL=cgc@example.invalid
export GIT_AUTHOR_DATE='2020-01-01T00:00:00Z' GIT_COMMITTER_DATE='2020-01-01T00:00:00Z'
export TZ=UTC LC_ALL=C

git init -q -b main repo
cd repo
git config core.autocrlf false
git config gc.auto 0

# 400 files in 20 directories, sizes from a few bytes to ~40 KiB.
awk 'BEGIN {
  for (d = 0; d < 20; d++) {
    system("mkdir -p dir" d)
    for (f = 0; f < 20; f++) {
      path = "dir" d "/file" f ".txt"; n = ((d * 20 + f) * 37) % 400
      for (l = 0; l < n; l++) printf "line %d of %s: %d\n", l, path, (l * 7919 + d) % 1000 > path
      if (n == 0) printf "empty-ish %s\n", path > path
      close(path)
    }
  }
}'
git add -A
git commit -q -m "initial import"

# Second commit: modify, delete, rename.
for d in 0 3 7 11; do echo "changed $d" >> "dir$d/file1.txt"; done
git rm -q dir5/file2.txt dir9/file3.txt
git mv dir2/file4.txt dir2/renamed.txt
git add -A
export GIT_AUTHOR_DATE='2020-01-02T00:00:00Z' GIT_COMMITTER_DATE='2020-01-02T00:00:00Z'
git commit -q -m "second commit"

git log --format=%H
git ls-tree -r HEAD
git diff --stat -M HEAD~1 HEAD
# pack-objects (threaded delta search) and fsck exercise git's allocator use heavily.
git gc -q --aggressive
git count-objects -v | grep -E '^(count|in-pack|packs)'
git fsck --full --strict --no-progress  # stderr stays out of stdout (CGC_STATS lines)
git cat-file -p HEAD
