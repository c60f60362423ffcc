#!/usr/bin/env bash
# bench_composefs.sh CORPUS WORK [RESULTS]
#
# composefs on the corpus (issue 14), one run, bootree only (Debian's ostree 2022.7 has no
# composefs support to compare with):
#   * image generation from the committed corpus v1: `composefs create --rev` without object
#     digests (--verity=maybe on a file system without fs-verity: what a deploy writes when the
#     commit carries no digest), with software fs-verity digests (--verity=yes: what
#     `commit --generate-composefs-metadata` and digest-checked deploys compute), and
#     `composefs create --from-file` of the image's own dump (the format writer alone);
#   * the image size (metadata only) against the tree's size;
#   * as root with EROFS + overlayfs (Linux >= 6.5): `find usr -type f | xargs cat` and `ls -lR`,
#     cold (drop_caches) and warm, on a composefs mount against the hardlink checkout of the same
#     commit, in a private mount namespace.
#
#   CORPUS   corpus directory with v1/ (shared/bench/make-corpus.sh; SKIP_CORPUS=1 to use as is)
#   WORK     scratch directory OUTSIDE the repository (~1 GB)
#   RESULTS  where runs.tsv and summary.md go (default WORK/results)
# Env: REPS (default 3), BOOTREE (default bootree; may hold arguments, e.g. "python3 -m bootree").
set -euo pipefail
export LC_ALL=C
# shellcheck source=bench/_pyc.sh
. "$(dirname "${BASH_SOURCE[0]}")/_pyc.sh"
usage="usage: bench_composefs.sh CORPUS WORK [RESULTS]"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CORPUS=$(realpath -m "${1:?$usage}")
WORK=$(realpath -m "${2:?$usage}")
RESULTS=$(realpath -m "${3:-$WORK/results}")
REPS=${REPS:-3}
BOOTREE=${BOOTREE:-bootree}
precompile "$BOOTREE"
die() { echo "error: $*" >&2; exit 1; }
case "$WORK/" in "$ROOT/"*) die "WORK must be outside the repository ($ROOT)" ;; esac
if [ -z "${SKIP_CORPUS:-}" ]; then
    MAKE_CORPUS=${MAKE_CORPUS:-$ROOT/../shared/bench/make-corpus.sh}
    [ -f "$MAKE_CORPUS" ] && bash "$MAKE_CORPUS" "$CORPUS" >/dev/null
fi
[ -d "$CORPUS/v1/usr" ] || die "$CORPUS has no v1/ tree"
mkdir -p "$WORK" "$RESULTS"
RUNS=$RESULTS/runs.tsv
printf 'step\trep\tseconds\n' > "$RUNS"
now() { date +%s.%N; }
timed() {  # timed STEP REP CMD...: run CMD, append its wall time
    local step=$1 rep=$2; shift 2
    sync
    local t0 t1; t0=$(now); "$@" >/dev/null; t1=$(now)
    printf '%s\t%s\t%.3f\n' "$step" "$rep" "$(echo "$t1 - $t0" | bc)" >> "$RUNS"
}

REPO=$WORK/repo
if [ ! -f "$REPO/refs/heads/corpus" ]; then
    rm -rf "$REPO"
    $BOOTREE --repo="$REPO" init --mode=bare-user
    $BOOTREE --repo="$REPO" commit -b corpus --timestamp=@1700000000 --tree=dir="$CORPUS/v1" >/dev/null
fi
IMG=$WORK/corpus.cfs
for rep in $(seq 1 "$REPS"); do
    timed create-maybe "$rep" $BOOTREE composefs create --repo="$REPO" --rev=corpus --verity=maybe "$IMG"
    timed create-digests "$rep" $BOOTREE composefs create --repo="$REPO" --rev=corpus --verity=yes "$IMG.yes"
done
$BOOTREE composefs dump "$IMG.yes" > "$WORK/corpus.dump"
for rep in $(seq 1 "$REPS"); do
    timed create-from-dump "$rep" $BOOTREE composefs create --from-file "$WORK/corpus.dump" "$WORK/from-dump.cfs"
done
cmp "$WORK/from-dump.cfs" "$IMG.yes" || die "dump round trip changed the image"

tree_bytes=$(du -s --block-size=1 --apparent-size "$CORPUS/v1" | cut -f1)
files=$(find "$CORPUS/v1" -type f | wc -l)
img_bytes=$(stat -c %s "$IMG"); img_yes_bytes=$(stat -c %s "$IMG.yes")

mount_note="not run (needs root, EROFS and overlayfs)"
if [ "$(id -u)" -eq 0 ] && grep -qw erofs /proc/filesystems && grep -qw overlay /proc/filesystems; then
    CO=$WORK/checkout
    [ -d "$CO/usr" ] || $BOOTREE --repo="$REPO" checkout -U -H corpus "$CO" >/dev/null
    cat > "$WORK/mounted.sh" <<'INNER'
set -euo pipefail
img=$1 objects=$2 co=$3 work=$4 reps=$5 runs=$6
mkdir -p "$work/lower" "$work/mnt"
mount -t erofs -o ro,loop,noacl "$img" "$work/lower"
mount -t overlay overlay -o "ro,lowerdir=$work/lower::$objects,redirect_dir=on,metacopy=on" "$work/mnt"
now() { date +%s.%N; }
for rep in $(seq 1 "$reps"); do
  for kind in composefs hardlink; do
    dir=$work/mnt; [ "$kind" = hardlink ] && dir=$co
    for what in cat lslR; do
      for cache in cold warm; do
        [ "$cache" = cold ] && { sync; echo 3 > /proc/sys/vm/drop_caches; }
        t0=$(now)
        if [ "$what" = cat ]; then (cd "$dir" && find usr -type f -print0 | xargs -0 cat > /dev/null)
        else ls -lR "$dir/usr" > /dev/null; fi
        t1=$(now)
        printf '%s-%s-%s\t%s\t%.3f\n' "$what" "$cache" "$kind" "$rep" "$(echo "$t1 - $t0" | bc)" >> "$runs"
      done
    done
  done
done
umount "$work/mnt" "$work/lower"
INNER
    unshare -m --propagation private bash "$WORK/mounted.sh" "$IMG.yes" "$REPO/objects" "$CO" "$WORK" "$REPS" "$RUNS"
    mount_note="composefs = EROFS image + overlay over $REPO/objects; hardlink = bootree checkout -U -H"
fi

{
    echo "# composefs on $(basename "$CORPUS")/v1 ($files files, $((tree_bytes / 1048576)) MiB)"
    echo
    echo "image (metadata only): $img_bytes bytes without object digests, $img_yes_bytes with" \
         "($(awk -v a="$img_yes_bytes" -v b="$tree_bytes" 'BEGIN { printf "%.2f", 100 * a / b }')% of the tree)"
    echo
    echo "| step | median s | runs |"
    echo "|---|---|---|"
    tail -n +2 "$RUNS" | sort -k1,1 -k3,3n | awk -F'\t' '
        { v[$1] = v[$1] " " $3; n[$1]++ }
        END { for (k in v) { split(substr(v[k], 2), a, " "); m = a[int((n[k] + 1) / 2)]; printf "| %s | %s | %d |\n", k, m, n[k] } }' | sort
    echo
    echo "mounts: $mount_note"
    echo "env: $(uname -r), $(nproc) cpus, $($BOOTREE --version 2>/dev/null | head -1)"
} | tee "$RESULTS/summary.md"
