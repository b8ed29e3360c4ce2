# Sourced by the launch scripts (dist_train.sh, dist_test.sh, dist_launch.sh,
# slurm_train.sh); not run on its own.
#
# check_args MIN "$@": print the calling script's header comment and exit 0
# for -h/--help; print its usage line and exit 2 with fewer than MIN
# arguments.
# PY: the interpreter that runs the tools: $PYTHON if set, else the
# repository's .venv/bin/python (tools/install.sh makes it), else python3.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

_header() {  # the script's leading comment, without the '#'
    sed -n '2,/^[^#]/{/^#/{s/^# \{0,1\}//;p}}' "$0"
}

check_args() {
    local min=$1
    shift
    if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
        _header
        exit 0
    fi
    if (( $# < min )); then
        echo "usage: $(_header | grep -m1 'bash tools/' | sed 's/^ *//; s/ *\\$/ .../')" >&2
        echo "(bash $0 --help for more)" >&2
        exit 2
    fi
}

if [[ -n "${PYTHON:-}" ]]; then
    PY=$PYTHON
elif [[ -x "$ROOT/.venv/bin/python" ]]; then
    PY="$ROOT/.venv/bin/python"
elif command -v python3 > /dev/null; then
    PY=python3
else
    echo 'error: no Python found: set PYTHON=/path/to/python (the one' \
        'with torch), or make .venv with tools/install.sh' >&2
    exit 2
fi
