#!/bin/sh
# Re-record the shipped traces (root, perf, tracefs at /sys/kernel/tracing).
# Usage: sh tests/traces/record.sh [OUTDIR]   (default: tests/traces)
# Each perf trace: perf record of the kmem:* events on one command (its tasks
# only, children inherited), then `perf script` default output, xz -9.
set -eu
OUT=${1:-$(dirname "$0")}
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
EVENTS="-e kmem:kmalloc -e kmem:kfree -e kmem:kmem_cache_alloc -e kmem:kmem_cache_free"
REPO=${REPO:-$(cd "$(dirname "$0")/../.." && git rev-parse --show-toplevel)}

rec() {  # rec NAME CMD...
    name=$1; shift
    perf record -q $EVENTS -o "$WORK/$name.data" -- "$@" >/dev/null 2>&1
    perf script -i "$WORK/$name.data" 2>/dev/null | xz -9 > "$OUT/$name.perf.txt.xz"
}

# 1. git clone of a local repository (no hard links: the objects are copied)
rec git-clone git clone -q --no-local "$REPO" "$WORK/clone"
# 2. a small C compile (-O2, one translation unit with stdio/stdlib/string)
cat > "$WORK/hello.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) { char *p = malloc(64); strcpy(p, argc > 1 ? argv[1] : "hi"); puts(p); free(p); return 0; }
C
rec cc-compile gcc -O2 -o "$WORK/hello" "$WORK/hello.c"
# 3. find over /usr/include
rec find-usr-include find /usr/include -name '*.h' -newer /etc/hostname
# 4. a Python import storm (fresh interpreter, no .pyc writes)
rec python-imports python3 -B -c 'import json, email.parser, http.client, asyncio, decimal, xml.etree.ElementTree, sqlite3, unittest, argparse, logging.handlers, multiprocessing, urllib.request, csv, zipfile, tarfile'

# 5. raw tracefs text: the four events system-wide while `find /usr/share` runs;
#    default options (hash-ptr on: pointers are hashed).
T=/sys/kernel/tracing
ON=$(cat $T/tracing_on)
echo 0 > $T/tracing_on
echo > $T/trace
echo 2048 > $T/buffer_size_kb
for e in kmalloc kfree kmem_cache_alloc kmem_cache_free; do echo 1 > $T/events/kmem/$e/enable; done
echo 1 > $T/tracing_on
find /usr/share/doc -maxdepth 2 > /dev/null
echo 0 > $T/tracing_on
for e in kmalloc kfree kmem_cache_alloc kmem_cache_free; do echo 0 > $T/events/kmem/$e/enable; done
cat $T/trace | xz -9 > "$OUT/find-share.tracefs.txt.xz"
# 6. the same with the hash-ptr option off (raw kernel pointers), a shorter workload
echo > $T/trace
echo 0 > $T/options/hash-ptr
for e in kmalloc kfree kmem_cache_alloc kmem_cache_free; do echo 1 > $T/events/kmem/$e/enable; done
echo 1 > $T/tracing_on
ls -laR /etc > /dev/null
echo 0 > $T/tracing_on
for e in kmalloc kfree kmem_cache_alloc kmem_cache_free; do echo 0 > $T/events/kmem/$e/enable; done
cat $T/trace | xz -9 > "$OUT/ls-etc.tracefs-nohash.txt.xz"   # hashing applies when reading
echo 1 > $T/options/hash-ptr
echo > $T/trace
echo 1408 > $T/buffer_size_kb   # the expanded default
echo "$ON" > $T/tracing_on
