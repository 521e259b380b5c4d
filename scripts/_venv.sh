# shellcheck shell=bash
# Shared by scripts/serve and scripts/test (sourced, not run): find a Python >= 3.11, create the
# virtualenv if it is missing, and install the project into it unless pyproject.toml is unchanged
# since the last install.
#
#   PYTHON=/path/to/python3.12 scripts/serve   # use that interpreter to create the venv
#   MATRIX_VENV=/tmp/venv scripts/test         # keep the venv somewhere else (default: <repo>/.venv)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MATRIX_VENV:-$ROOT/.venv}"
VENV_PY="$VENV/bin/python"
STAMP="$VENV/.matrixsrv-install-stamp"

die() {
    echo "error: $*" >&2
    exit 1
}

# Print the version of interpreter $1 if it is Python >= 3.11; fail otherwise.
_python_ok() {
    "$1" -c 'import sys; v = sys.version_info; print("%d.%d.%d" % v[:3]); sys.exit(v < (3, 11))' 2>/dev/null
}

# Print the interpreter to build the venv with: $PYTHON if set, else the first of python3.13,
# python3.12, python3.11, python3 that runs and is at least 3.11.
find_python() {
    local candidate
    if [ -n "${PYTHON:-}" ]; then
        command -v "$PYTHON" >/dev/null 2>&1 || die "PYTHON=$PYTHON: no such command"
        _python_ok "$PYTHON" >/dev/null ||
            die "PYTHON=$PYTHON is $("$PYTHON" --version 2>&1 | head -1); matrixsrv needs Python >= 3.11"
        echo "$PYTHON"
        return
    fi
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && _python_ok "$candidate" >/dev/null; then
            echo "$candidate"
            return
        fi
    done
    die "matrixsrv needs Python >= 3.11; none of python3.13, python3.12, python3.11, python3 is one" \
        "(python3 is $(python3 --version 2>&1 | head -1)). Install one, or point PYTHON at it."
}

# ensure_venv [EXTRAS]: make $VENV exist and hold the project installed editable with EXTRAS
# (e.g. "test"); a stamp inside the venv records the pyproject.toml hash and extras of the last
# install, so an unchanged project is not reinstalled.
ensure_venv() {
    local extras="${1:-}" python version want have spec
    if [ ! -x "$VENV_PY" ] || ! _python_ok "$VENV_PY" >/dev/null; then
        if [ -x "$VENV_PY" ]; then
            die "$VENV was made with $("$VENV_PY" --version 2>&1 | head -1), matrixsrv needs Python >= 3.11;" \
                "remove it (rm -rf $VENV) and run again"
        fi
        python="$(find_python)"
        version="$(_python_ok "$python")"
        echo "==> creating virtualenv $VENV with $python (Python $version)"
        "$python" -m venv --clear "$VENV" || die "could not create the virtualenv (is the venv module installed?)"
        rm -f "$STAMP"
    fi

    want="$("$VENV_PY" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' \
        "$ROOT/pyproject.toml")"
    have="$(cat "$STAMP" 2>/dev/null || true)"
    # "<hash> test" also satisfies a plain install: the test extras only add packages.
    if [ "$have" = "$want $extras" ] || { [ -z "$extras" ] && [ "${have%% *}" = "$want" ]; }; then
        return
    fi
    spec="."
    [ -n "$extras" ] && spec=".[$extras]"
    echo "==> installing matrixsrv into $VENV (pip install -e '$spec')"
    (cd "$ROOT" && "$VENV_PY" -m pip install --disable-pip-version-check --quiet -e "$spec") ||
        die "pip install -e '$spec' failed"
    echo "$want $extras" >"$STAMP"
}
