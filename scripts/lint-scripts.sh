#!/usr/bin/env bash
# Lints the repository's scripts, which no compiler checks and which otherwise rot
# unnoticed between the rare runs of bench.sh or soak.sh (issue 14):
#   - shellcheck over every *.sh and every shell script under scripts/ and .ci/
#     (.ci/run has no extension);
#   - ruff check and ruff format --check over every *.py (settings: ruff.toml).
# Files are the ones git knows of plus new ones it does not ignore, so that target/,
# .tools/ and node_modules are never linted. .ci/run runs this after clippy; a finding
# fails it. shellcheck (Debian) and ruff (PyPI, pinned) come from
# scripts/install-test-deps.sh, which is run here when either is missing.
#   scripts/lint-scripts.sh          lint
#   scripts/lint-scripts.sh --fix    let ruff fix what it safely can and reformat, then lint
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { echo "lint-scripts: $*" >&2; }
RUFF=.tools/bin/ruff
if ! command -v shellcheck >/dev/null 2>&1 || ! "$RUFF" --version >/dev/null 2>&1; then
    log "shellcheck or ruff missing: running scripts/install-test-deps.sh"
    scripts/install-test-deps.sh
fi

git rev-parse --is-inside-work-tree >/dev/null 2>&1 ||
    { log "error: not a git work tree (the file list comes from git)"; exit 2; }
shell=()
python=()
while IFS= read -r -d '' f; do
    [ -f "$f" ] || continue # deleted but not yet committed
    case "$f" in
        *.sh) shell+=("$f") ;;
        *.py) python+=("$f") ;;
        scripts/* | .ci/*)
            if head -n1 "$f" | grep -qE '^#!.*[/ ](ba)?sh([[:space:]]|$)'; then shell+=("$f"); fi
            ;;
    esac
done < <(git ls-files -z --cached --others --exclude-standard)
[ "${#shell[@]}" -gt 0 ] || { log "error: no shell script found"; exit 2; }
[ "${#python[@]}" -gt 0 ] || { log "error: no Python file found"; exit 2; }

if [ "${1:-}" = --fix ]; then
    "$RUFF" check --no-cache --fix "${python[@]}" || true
    "$RUFF" format --no-cache "${python[@]}"
fi

status=0
log "shellcheck $(shellcheck --version | sed -n 's/^version: //p'): ${shell[*]}"
shellcheck "${shell[@]}" || status=1
log "$("$RUFF" --version): ${python[*]}"
"$RUFF" check --no-cache "${python[@]}" || status=1
"$RUFF" format --no-cache --check --diff "${python[@]}" || status=1
if [ "$status" -ne 0 ]; then
    log "FAILED (fix the findings above; scripts/lint-scripts.sh --fix handles ruff's fixable ones)"
    exit 1
fi
log "ok (${#shell[@]} shell scripts, ${#python[@]} Python files)"
