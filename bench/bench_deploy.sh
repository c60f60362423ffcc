#!/usr/bin/env bash
# bench_deploy.sh CORPUS WORK [RESULTS]
#
# Times `admin deploy` of the corpus v1 then v2 (an upgrade: 2 deployments, /etc merge) with the
# real `ostree` and with bootree, side by side in one run, and measures the disk each deployment
# adds. Must run as root (bare sysroot repo, real ownership). See bench/README.md.
#
#   CORPUS   corpus directory with v1/ and v2/ (shared/bench/make-corpus.sh; SKIP_CORPUS=1 to
#            use it as it is)
#   WORK     scratch directory OUTSIDE the repository (~2 GB)
#   RESULTS  where runs.tsv and summary.md go (default WORK/results)
#
# Both tools deploy the same commits: v1 and v2 are committed once (by ostree, branch `corpus`,
# the timestamps of BASELINE.md) into a bare seed repo, and each repetition starts from a fresh
# sysroot whose repo gets them by `ostree pull-local` (not timed). Timed: deploy v1, deploy v2,
# undeploy 0 (back to v1). Disk: allocated bytes of the sysroot (du) before and after each deploy.
# Env: REPS (default 3), OSTREE (default ostree), BOOTREE (default bootree, may hold arguments,
#      e.g. "python3 -m bootree"), TOOLS (default "ostree bootree"), SETTLE (seconds of pause
#      after clearing old sysroots before the first timed step, default 65), BEFORE (an older
#      bootree: adds the tool "before", timed in the same run).
set -euo pipefail
export LC_ALL=C
# shellcheck source=bench/_pyc.sh
. "$(dirname "${BASH_SOURCE[0]}")/_pyc.sh"
# shellcheck source=bench/_order.sh
. "$(dirname "${BASH_SOURCE[0]}")/_order.sh"
usage="usage: bench_deploy.sh CORPUS WORK [RESULTS]"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CORPUS=$(realpath -m "${1:?$usage}")
WORK=$(realpath -m "${2:?$usage}")
RESULTS=$(realpath -m "${3:-$WORK/results}")
REPS=${REPS:-3}
OSTREE=${OSTREE:-ostree}
BOOTREE=${BOOTREE:-bootree}
BEFORE=${BEFORE:-}
TOOLS=${TOOLS:-ostree bootree${BEFORE:+ before}}
precompile "$BOOTREE" "$BEFORE"
export OSTREE_SYSROOT_DEBUG=mutable-deployments   # both tools: no chattr +i, so rm -rf works

die() { echo "error: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root"
case "$WORK/" in "$ROOT/"*) die "WORK must be outside the repository ($ROOT)" ;; esac
if [ -z "${SKIP_CORPUS:-}" ]; then
    MAKE_CORPUS=${MAKE_CORPUS:-$ROOT/../shared/bench/make-corpus.sh}
    [ -f "$MAKE_CORPUS" ] && bash "$MAKE_CORPUS" "$CORPUS" >/dev/null
fi
[ -d "$CORPUS/v1/usr" ] && [ -d "$CORPUS/v2/usr" ] || die "$CORPUS has no v1/ and v2/ trees"
mkdir -p "$WORK" "$RESULTS"
RUNS=$RESULTS/runs.tsv
printf 'tool\trep\tstep\tseconds\tsysroot_bytes\tadded_bytes\n' > "$RUNS"

disk() { du -s --block-size=1 "$1" | cut -f1; }
now() { date +%s.%N; }

SEED=$WORK/seed-repo
if [ ! -f "$SEED/refs/heads/corpus" ] || [ "$(cat "$SEED/.corpus-stamp" 2>/dev/null)" != "$(cat "$CORPUS/.stamp" 2>/dev/null)" ]; then
    echo "== committing v1 and v2 into a bare seed repo (once)"
    rm -rf "$SEED"
    $OSTREE --repo="$SEED" init --mode=bare
    $OSTREE --repo="$SEED" commit -b corpus --tree=dir="$CORPUS/v1" --timestamp=@1700000000 --subject=v1 >/dev/null
    $OSTREE --repo="$SEED" commit -b corpus --tree=dir="$CORPUS/v2" --timestamp=@1700604800 --subject=v2 >/dev/null
    cat "$CORPUS/.stamp" > "$SEED/.corpus-stamp" 2>/dev/null || true
fi
C1=$($OSTREE --repo="$SEED" rev-parse corpus^)
C2=$($OSTREE --repo="$SEED" rev-parse corpus)
echo "v1 $C1"; echo "v2 $C2"

step() {  # step TOOL REP NAME SYSROOT CMD...
    local tool=$1 rep=$2 name=$3 sr=$4; shift 4
    local before t0 t1 after
    before=$(disk "$sr"); sync
    t0=$(now); "$@" >/dev/null; t1=$(now)
    after=$(disk "$sr")
    printf '%s\t%s\t%s\t%.3f\t%s\t%s\n' "$tool" "$rep" "$name" "$(echo "$t1 - $t0" | bc)" "$after" "$((after - before))" >> "$RUNS"
    printf '  %-8s %-10s %6.2f s   sysroot %6.1f MB (+%.1f MB)\n' "$tool" "$name" "$(echo "$t1 - $t0" | bc)" \
        "$(echo "$after / 1000000" | bc -l)" "$(echo "($after - $before) / 1000000" | bc -l)"
}

# Nothing is deleted until every timed step has run: each rep and tool gets a fresh sysroot.
# ext4 without a journal (this VM's root) skips inodes freed in the last 60 s (360 s while their
# inode table block is not yet written back), when it allocates new ones; right after a 13,000-file delete, creating
# files took up to 3x the kernel time (perf: recently_deleted() under ext4_create).
SYSROOTS=$WORK/sysroots
rm -rf "$SYSROOTS"; mkdir -p "$SYSROOTS"
sync; sleep "${SETTLE:-65}"
for rep in $(seq 1 "$REPS"); do
    echo "== rep $rep/$REPS"
    # shellcheck disable=SC2046  # word splitting of the rotated list is intended
    for tool in $(rotated "$rep" $TOOLS); do
        case $tool in ostree) T=$OSTREE ;; bootree) T=$BOOTREE ;; before) T=$BEFORE ;; *) die "unknown tool $tool" ;; esac
        SR=$SYSROOTS/$rep-$tool
        mkdir -p "$SR"
        $T admin init-fs "$SR" >/dev/null
        $T admin os-init --sysroot="$SR" corpus >/dev/null
        $OSTREE --repo="$SR/ostree/repo" pull-local "$SEED" "$C1" "$C2" >/dev/null
        # refs keep both commits through the prune that every deploy runs
        $OSTREE --repo="$SR/ostree/repo" refs --create=corpus/v1 "$C1"
        $OSTREE --repo="$SR/ostree/repo" refs --create=corpus/v2 "$C2"
        step "$tool" "$rep" deploy-v1 "$SR" $T admin deploy --sysroot="$SR" --os=corpus corpus/v1
        step "$tool" "$rep" deploy-v2 "$SR" $T admin deploy --sysroot="$SR" --os=corpus corpus/v2
        n=$($OSTREE admin status --sysroot="$SR" | grep -c '^[ *] corpus')
        [ "$n" -eq 2 ] || die "$tool: expected 2 deployments after v2, ostree admin status lists $n"
        step "$tool" "$rep" undeploy-0 "$SR" $T admin undeploy --sysroot="$SR" 0
        $OSTREE admin status --sysroot="$SR" | grep -q "$C1" || die "$tool: v1 not deployed after undeploy 0"
    done
done
rm -rf "$SYSROOTS"

python3 - "$RUNS" > "$RESULTS/summary.md" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
tools = list(dict.fromkeys(r["tool"] for r in rows))
steps = list(dict.fromkeys(r["step"] for r in rows))
def cell(vals, fmt):
    return f"{fmt(statistics.median(vals))} ({fmt(min(vals))}–{fmt(max(vals))})"
print("| step | " + " | ".join(f"{t} wall s" for t in tools) + " | " + " | ".join(f"{t} disk added MB" for t in tools) + " |")
print("|---|" + "---:|" * (2 * len(tools)))
for s in steps:
    secs = [cell([float(r["seconds"]) for r in rows if r["tool"] == t and r["step"] == s], lambda x: f"{x:.2f}") for t in tools]
    adds = [cell([int(r["added_bytes"]) / 1e6 for r in rows if r["tool"] == t and r["step"] == s], lambda x: f"{x:.1f}") for t in tools]
    print(f"| {s} | " + " | ".join(secs) + " | " + " | ".join(adds) + " |")
EOF
echo; cat "$RESULTS/summary.md"
