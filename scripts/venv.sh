# Sourced by setup.sh and setup_vllm.sh: torch by pip, everything else by uv. The first argument of each
# function is the venv's folder.

# Creates the venv if needed, with pip, uv and the CPU build of torch.
venv_with_torch() {
    [ -x "$1/bin/python" ] || python3 -m venv "$1"
    "$1/bin/python" -m pip install --quiet --upgrade pip uv==0.13.9
    # By pip: its own configuration says where the CPU wheel lies; an unpinned torch would pull a multi-GB
    # CUDA build. The bytecode of torch and its dependencies is compiled below on every core (pip compiles on
    # one: ~35 s more). As pip does, files this Python cannot compile (torch's tests of newer syntax) are skipped.
    "$1/bin/python" -m pip install --quiet --no-compile torch==2.13.0
    "$1/bin/python" -c "import compileall, sysconfig
compileall.compile_dir(sysconfig.get_paths()['purelib'], quiet=2, workers=0)"
}

# uv pip <verb> in the venv. uv keeps the torch above and resolves the same packages as pip, several times
# faster (README, "Two commands"). A private index is set for uv with UV_INDEX_URL / UV_EXTRA_INDEX_URL.
# Bytecode is compiled at install: where PYTHONDONTWRITEBYTECODE is set nothing caches it later, and every
# process (tests, Ray workers) would recompile torch and transformers when it imports them.
export UV_COMPILE_BYTECODE=1
uv_pip() {
    local venv=$1 verb=$2
    shift 2
    "$venv/bin/uv" pip "$verb" --quiet --python "$venv/bin/python" "$@"
}
