#!/usr/bin/env bash
# bench_repo.sh CORPUS WORK [RESULTS]
#
# Times the repository core of bootree against the real `ostree` CLI, side by side in one run,
# on the Debian corpus built by shared/bench/make-corpus.sh (CORPUS/v1, CORPUS/v2). See
# bench/README.md. Must run as root: the corpus is committed with its real ownership.
#
#   CORPUS   corpus directory; (re)built first with make-corpus.sh (seconds when up to date)
#   WORK     scratch directory OUTSIDE the repository (about 2 GB: repos and checkouts)
#   RESULTS  where runs.tsv, checksums.tsv, env.txt and summary.md go (default WORK/results)
#
# Env: REPS (default 3), OSTREE (default ostree), BOOTREE (default bootree; may hold arguments,
#      e.g. "python3 -m bootree"), TOOLS (default "ostree bootree"), MAKE_CORPUS (path of
#      make-corpus.sh), SKIP_CORPUS=1 (use CORPUS as it is), SETTLE (seconds of pause after
#      clearing old runs before the first timed step, default 35; see the note at the runs),
#      BEFORE (the command of an older bootree, e.g. a checkout of the commit before a change:
#      adds the tool "before" to TOOLS, so before and after are timed in the same run).
# A dry run of the script itself: BOOTREE=ostree bench/bench_repo.sh CORPUS WORK
set -euo pipefail
export LC_ALL=C
# shellcheck source=bench/_pyc.sh
. "$(dirname "${BASH_SOURCE[0]}")/_pyc.sh"
# shellcheck source=bench/_order.sh
. "$(dirname "${BASH_SOURCE[0]}")/_order.sh"

usage="usage: bench_repo.sh CORPUS WORK [RESULTS]"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CORPUS_ARG=${1:?$usage}
WORK_ARG=${2:?$usage}
REPS=${REPS:-3}
OSTREE=${OSTREE:-ostree}
BOOTREE=${BOOTREE:-bootree}
BEFORE=${BEFORE:-}
TOOLS=${TOOLS:-ostree bootree${BEFORE:+ before}}
precompile "$BOOTREE" "$BEFORE"
TS1=@1700000000
TS2=@1700604800
GOLDEN_V1=5edfc30786796502e1aaf05abdc06d92e8fece87f30f764d1a926713dbe8aa63
GOLDEN_V2=e3141a15c92cd2cbf524c247bdd7ad4859945f43da515015ca708bd39c5d33fc

die() { echo "error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root: commits keep the corpus's real ownership"
[ -x /usr/bin/time ] || die "/usr/bin/time is missing (apt-get install time)"
case "$(realpath -m "$WORK_ARG")/" in
    "$ROOT/"*) die "WORK must be outside the repository ($ROOT)" ;;
esac

# --- corpus -----------------------------------------------------------------------------------
if [ -z "${SKIP_CORPUS:-}" ]; then
    MAKE_CORPUS=${MAKE_CORPUS:-}
    if [ -z "$MAKE_CORPUS" ]; then
        for c in "$ROOT/../shared/bench/make-corpus.sh" /work/shared/bench/make-corpus.sh; do
            if [ -f "$c" ]; then MAKE_CORPUS=$c; break; fi
        done
    fi
    [ -n "$MAKE_CORPUS" ] || die "make-corpus.sh not found: set MAKE_CORPUS, or SKIP_CORPUS=1"
    echo "== corpus: bash $MAKE_CORPUS $CORPUS_ARG"
    bash "$MAKE_CORPUS" "$CORPUS_ARG" | tail -3
fi
CORPUS=$(cd "$CORPUS_ARG" && pwd)
{ [ -d "$CORPUS/v1" ] && [ -d "$CORPUS/v2" ]; } || die "$CORPUS has no v1/ and v2/"
mkdir -p "$WORK_ARG"
WORK=$(cd "$WORK_ARG" && pwd)
RES=${3:-$WORK/results}
mkdir -p "$RES"
RES=$(cd "$RES" && pwd)

# --- tools ------------------------------------------------------------------------------------
read -ra OSTREE_CMD <<< "$OSTREE"
read -ra BOOTREE_CMD <<< "$BOOTREE"
read -ra BEFORE_CMD <<< "$BEFORE"
tool_cmd() {   # tool_cmd TOOL: set CMD to the argv prefix of that tool
    case $1 in
        ostree) CMD=("${OSTREE_CMD[@]}") ;;
        bootree) CMD=("${BOOTREE_CMD[@]}") ;;
        before) [ -n "$BEFORE" ] || die "tool 'before' needs BEFORE"; CMD=("${BEFORE_CMD[@]}") ;;
        *) die "unknown tool $1" ;;
    esac
}
for tool in $TOOLS; do
    tool_cmd "$tool"
    command -v "${CMD[0]}" >/dev/null || die "$tool: '${CMD[0]}' not found"
done
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "kernel: $(uname -r); cpus: $(nproc); reps: $REPS"
    for tool in $TOOLS; do
        tool_cmd "$tool"
        echo "$tool: ${CMD[*]} ($("${CMD[@]}" --version 2>&1 | tr '\n' ' ' | cut -c1-100))"
    done
} > "$RES/env.txt"
cat "$RES/env.txt"

RUNS=$RES/runs.tsv
SUMS=$RES/checksums.tsv
printf 'tool\top\trep\twall_s\tuser_s\tsys_s\tmaxrss_kb\n' > "$RUNS"
printf 'tool\trep\trepo\tversion\tcommit\texpected\n' > "$SUMS"
mismatches=0

# measure TOOL OP REP ARGS...: run "TOOL ARGS..." under /usr/bin/time, append a row to runs.tsv
measure() {
    local tool=$1 op=$2 rep=$3 t log wall user sys rss
    shift 3
    tool_cmd "$tool"
    t=$WORK/logs/$tool.$op.$rep.time
    log=$WORK/logs/$tool.$op.$rep.log
    sync
    if ! /usr/bin/time -f '%e %U %S %M' -o "$t" "${CMD[@]}" "$@" > "$log" 2>&1; then
        echo "FAILED: $tool $op (rep $rep): ${CMD[*]} $*" >&2
        tail -5 "$log" >&2
        return 1
    fi
    read -r wall user sys rss < <(tail -1 "$t")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$op" "$rep" "$wall" "$user" "$sys" "$rss" >> "$RUNS"
    printf '  %-8s %-28s %7.2fs wall %7.2fs cpu %6d MB rss\n' "$tool" "$op" "$wall" \
        "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" "$((rss / 1024))"
}

# check_ref TOOL REP REPO VERSION EXPECTED: the "corpus" ref must hold the golden commit checksum
check_ref() {
    local tool=$1 rep=$2 repo=$3 version=$4 expected=$5 got
    got=$(cat "$repo/refs/heads/corpus" 2>/dev/null || echo missing)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$rep" "$(basename "$repo")" "$version" "$got" "$expected" >> "$SUMS"
    if [ "$got" != "$expected" ]; then
        echo "  MISMATCH: $tool $version in $(basename "$repo"): $got, expected $expected" >&2
        mismatches=$((mismatches + 1))
    fi
}

# --- the runs: both tools in each repetition, so drift in the machine hits both ---------------
mkdir -p "$WORK/logs"
# Nothing is deleted until every timed step has run. ext4 without a journal (this VM's root)
# skips inodes freed in the last 30 s, and inode tables not yet written back, when it allocates
# new ones; right after deleting a 13,000-file repository, creating files took up to 3x the
# kernel time (perf: recently_deleted() under ext4_create). Each step gets fresh directories.
RUNS_DIR=$WORK/runs
rm -rf "$RUNS_DIR"
sync; sleep "${SETTLE:-65}"
for rep in $(seq 1 "$REPS"); do
    # shellcheck disable=SC2046  # word splitting of the rotated list is intended
    for tool in $(rotated "$rep" $TOOLS); do
        echo "== rep $rep/$REPS: $tool"
        W=$RUNS_DIR/$rep-$tool
        RA=$W/repo-archive
        RB=$W/repo-bareuser
        CO=$W/checkout
        mkdir -p "$W"

        measure "$tool" init-archive "$rep" --repo="$RA" init --mode=archive
        measure "$tool" commit-v1-archive "$rep" --repo="$RA" commit --branch=corpus \
            --subject=v1 --timestamp=$TS1 --tree=dir="$CORPUS/v1"
        check_ref "$tool" "$rep" "$RA" v1 "$GOLDEN_V1"
        measure "$tool" commit-v2-archive "$rep" --repo="$RA" commit --branch=corpus \
            --subject=v2 --timestamp=$TS2 --tree=dir="$CORPUS/v2"
        check_ref "$tool" "$rep" "$RA" v2 "$GOLDEN_V2"
        measure "$tool" fsck-archive "$rep" --repo="$RA" fsck

        tool_cmd "$tool"
        "${CMD[@]}" --repo="$RB" init --mode=bare-user
        measure "$tool" commit-v1-bareuser "$rep" --repo="$RB" commit --branch=corpus \
            --subject=v1 --timestamp=$TS1 --tree=dir="$CORPUS/v1"
        check_ref "$tool" "$rep" "$RB" v1 "$GOLDEN_V1"
        measure "$tool" checkout-bareuser-hardlink "$rep" --repo="$RB" checkout -U -H corpus "$CO-hardlink"

        # ostree fills uncompressed-objects-cache/ on the first user-mode checkout of an archive
        # repo and hardlinks from it later: time the first (cold) and a second checkout.
        rm -rf "$RA/uncompressed-objects-cache"
        measure "$tool" checkout-archive "$rep" --repo="$RA" checkout -U "$GOLDEN_V1" "$CO-archive"
        measure "$tool" checkout-archive-again "$rep" --repo="$RA" checkout -U "$GOLDEN_V1" "$CO-archive-again"
    done
done
rm -rf "$RUNS_DIR"

# --- summary ----------------------------------------------------------------------------------
python3 - "$RUNS" "$TOOLS" > "$RES/summary.md" <<'EOF'
import csv
import statistics
import sys

runs_path, tools = sys.argv[1], sys.argv[2].split()
rows = list(csv.DictReader(open(runs_path), delimiter="\t"))
ops = list(dict.fromkeys(r["op"] for r in rows))
med = {}
for tool in tools:
    for op in ops:
        rs = [r for r in rows if r["tool"] == tool and r["op"] == op]
        if rs:
            med[tool, op] = (
                statistics.median(float(r["wall_s"]) for r in rs),
                statistics.median(float(r["user_s"]) + float(r["sys_s"]) for r in rs),
                statistics.median(int(r["maxrss_kb"]) for r in rs) / 1024,
                len(rs),
            )

def cell(tool, op, i, fmt):
    return format(med[tool, op][i], fmt) if (tool, op) in med else "–"

head = ["operation"]
for what in ("wall s", "CPU s", "peak RSS MB"):
    head += [f"{t} {what}" for t in tools]
if len(tools) >= 2:
    head.insert(len(tools) + 1, f"{tools[0]}/{tools[1]} (wall)")
print("| " + " | ".join(head) + " |")
print("|---" + "|---:" * (len(head) - 1) + "|")
for op in ops:
    line = [op] + [cell(t, op, 0, ".2f") for t in tools]
    if len(tools) >= 2:
        a, b = med.get((tools[0], op)), med.get((tools[1], op))
        line.append(f"{a[0] / b[0]:.2f}x" if a and b and b[0] > 0 else "–")
    line += [cell(t, op, 1, ".2f") for t in tools] + [cell(t, op, 2, ".0f") for t in tools]
    print("| " + " | ".join(line) + " |")
n = max((v[3] for v in med.values()), default=0)
print(f"\nMedians of {n} repetition(s). A ratio above 1 means {tools[1] if len(tools) > 1 else tools[0]} is faster.")
EOF
echo
cat "$RES/summary.md"
echo
if [ "$mismatches" -eq 0 ]; then
    echo "checksums: every commit matches the golden v1 $GOLDEN_V1 and v2 $GOLDEN_V2 ($SUMS)"
else
    echo "checksums: $mismatches MISMATCH(ES), see $SUMS" >&2
    exit 1
fi
