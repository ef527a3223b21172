#!/usr/bin/env bash
# scripts/sqlite-tools.sh DIR: build SQLite's own test programs into DIR
# (default .tools), from Debian's source package of the SQLite installed here,
# so that the tools speak the same file format as the library under test.
#
#   speedtest1 --size 10 [--journal wal] DB   SQLite's standard benchmark
#   mptest DB SCRIPT.test                      multi-process locking test (scripts in DIR/mptest-scripts/)
#   dbhash DB                                  SHA1 of the logical content: equal hashes, equal databases
#
# Idempotent (programs already in DIR are kept). Needs root for apt-get.
set -euo pipefail
out=$(realpath -m "${1:-.tools}")
mkdir -p "$out"
have_all() {
  [[ -x $out/speedtest1 && -x $out/mptest && -x $out/dbhash && -d $out/mptest-scripts ]]
}
have_all && exit 0

command -v gcc >/dev/null || { echo "sqlite-tools: gcc is missing" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
if [[ ! -f /usr/include/sqlite3.h ]]; then
  apt-get install -y -q libsqlite3-dev >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && apt-get install -y -q libsqlite3-dev >/dev/null; }
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# A private apt state whose only sources are the machine's binary sources
# turned into source ones: the system's own lists and settings stay untouched.
mkdir -p "$scratch/lists/partial" "$scratch/parts"
apt_opts=(-o "Dir::State::Lists=$scratch/lists" -o "APT::Sandbox::User=root")
if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >"$scratch/parts/debian.sources"
  apt_opts+=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$scratch/parts")
else
  grep -h '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' >"$scratch/src.list"
  apt_opts+=(-o "Dir::Etc::SourceList=$scratch/src.list" -o "Dir::Etc::SourceParts=/dev/null")
fi
apt-get "${apt_opts[@]}" update -q >/dev/null
(cd "$scratch" && apt-get "${apt_opts[@]}" source --download-only -q sqlite3 >/dev/null)

tar -xf "$scratch"/sqlite3_*.orig.tar.* -C "$scratch"
src=$(find "$scratch" -maxdepth 1 -type d -name 'sqlite3-*' | head -n 1)
[[ -n $src ]] || { echo "sqlite-tools: no sqlite3 source tree in the package" >&2; exit 1; }

gcc -O2 -o "$out/speedtest1" "$src/test/speedtest1.c" -lsqlite3 -lm
gcc -O2 -o "$out/mptest" "$src/mptest/mptest.c" -lsqlite3 -lpthread
gcc -O2 -o "$out/dbhash" "$src/tool/dbhash.c" -lsqlite3
rm -rf "$out/mptest-scripts"
cp -r "$src/mptest" "$out/mptest-scripts"
have_all || { echo "sqlite-tools: build incomplete in $out" >&2; exit 1; }
echo "sqlite-tools: built speedtest1, mptest, dbhash in $out"
