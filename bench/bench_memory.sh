#!/usr/bin/env bash
# bench_memory.sh WORK: peak memory of `commit` as the tree grows, bootree beside ostree.
#
# Builds synthetic trees of N small files (N = 5,000, 20,000, 80,000) plus one 200 MB file and
# commits each into a fresh archive repository with both tools under /usr/bin/time, printing
# peak RSS. Contents are streamed, so RSS may grow with the number of entries (names and
# checksums, ~200 bytes each) but not with the bytes committed.
#
# Env: OSTREE (default ostree), BOOTREE (default bootree), SIZES (default "5000 20000 80000").
set -euo pipefail
WORK=${1:?usage: bench_memory.sh WORK}
OSTREE=${OSTREE:-ostree}
BOOTREE=${BOOTREE:-bootree}
SIZES=${SIZES:-5000 20000 80000}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

make_tree() {  # make_tree DIR N: N files of 1-4 KiB in 100 directories
    python3 - "$1" "$2" <<'PY'
import os, sys, random
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(n)
for i in range(n):
    d = os.path.join(root, f"d{i % 100:03d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i}"), "wb") as f:
        f.write(rng.randbytes(rng.randint(1024, 4096)))
PY
}

printf '| tree | ostree peak RSS MB | bootree peak RSS MB |\n|---|---:|---:|\n'
for n in $SIZES big; do
    tree=$WORK/tree-$n
    if [ ! -d "$tree" ]; then
        if [ "$n" = big ]; then
            mkdir -p "$tree" && head -c 200000000 /dev/urandom > "$tree/big.bin"
        else
            make_tree "$tree" "$n"
        fi
    fi
    row="| $n |"
    for tool in "$OSTREE" "$BOOTREE"; do
        repo=$WORK/repo-$n-$(basename "${tool%% *}")
        rm -rf "$repo"
        $tool --repo="$repo" init --mode=archive
        rss=$( { /usr/bin/time -f '%M' $tool --repo="$repo" commit -b t --tree=dir="$tree" >/dev/null; } 2>&1 | tail -1)
        row="$row $((rss / 1024)) |"
    done
    echo "$row"
done
