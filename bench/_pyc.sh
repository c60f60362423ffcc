# Sourced by the bench scripts. A user's installed bootree runs from compiled bytecode; a shell
# with PYTHONDONTWRITEBYTECODE=1 (some CI and agent environments) would make every timed run
# compile bootree from source again (0.3-0.7 s per command), so the scripts clear it and
# compile each timed bootree's package once before timing.
unset PYTHONDONTWRITEBYTECODE

# precompile CMD...: byte-compile the bootree package that each command (a console script, or
# "python -m bootree") runs.
precompile() {
    local cmd py
    for cmd in "$@"; do
        [ -n "$cmd" ] || continue
        read -ra words <<< "$cmd"
        py=${words[0]}
        if [ -f "$(command -v "$py" 2>/dev/null)" ] && head -c 2 "$(command -v "$py")" | grep -q '#!'; then
            case $(head -1 "$(command -v "$py")") in
                *python*) py=$(head -1 "$(command -v "$py")" | sed 's/^#! *//; s/ .*//') ;;
            esac
        fi
        "$py" -c 'import bootree, compileall, os, sys; sys.exit(not compileall.compile_dir(os.path.dirname(bootree.__file__), quiet=1))' \
            || echo "warning: could not byte-compile bootree for $cmd" >&2
    done
}
