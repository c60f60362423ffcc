# Sourced by the bench scripts: the order the tools run in, rotated every repetition.
#
# Where a tool runs in a repetition matters on this disk: a run right after another tool's
# 13,000-file tree was written (or deleted) pays extra kernel time creating inodes (perf:
# recently_deleted() under ext4_create), and the first run after a pause finds a cleaner page
# cache. A fixed order gives one tool that handicap every time (the 12:36 and 16:26 series had
# "before" last and bootree in the middle throughout). Rotating puts each tool in each position
# once in every len(TOOLS) repetitions, so run REPS as a multiple of the number of tools.
#
# rotated REP TOOL...: print the tools rotated left by REP-1.
rotated() {
    local rep=$1; shift
    local tools=("$@") n=$# i
    for ((i = 0; i < n; i++)); do printf '%s ' "${tools[(i + rep - 1) % n]}"; done
}
