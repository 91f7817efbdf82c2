#!/usr/bin/env bash
# Set up everything the test suite needs on this machine, then run the checks and the suite.
#
#   scripts/test.sh              # what README.md tells a newcomer to run, and what .ci/run runs
#   scripts/test.sh tests/test_doc_snippets.py -x   # extra arguments go to pytest
#
# 1. Debian packages, installed with apt-get only when missing and only as root:
#      chromium        the panel browser tests (tests/test_panel_browser.py drives /usr/bin/chromium)
#      rsync, rclone   baselines of the transfer and pre-scan benchmarks (python -m benchmarks.run)
#      openssh-server  the private sshd of the mount benchmark's SFTP baseline
#      jq              the panel API example of docs/panel.md (tests/test_doc_snippets.py runs it)
#    Without root nothing is installed: the missing packages are named with the command to install them,
#    and the run goes on. The browser tests then skip, saying chromium is not installed; the suite
#    itself does not use the benchmark tools.
# 2. A virtualenv in .venv (created when absent, with $PYTHON, default python3, >= 3.11) holding
#    this checkout with the [all,test] extras, at the versions pinned in scripts/test-constraints.txt
#    (resolving them freely can take pip most of an hour; see that file).
# 3. ruff check, ruff format --check, mypy, lint-imports, then python -m pytest -q.
set -euo pipefail
cd "$(dirname "$0")/.."

# package -> the file whose absence means the package is missing
declare -A PROBES=(
    [chromium]=/usr/bin/chromium
    [rsync]=/usr/bin/rsync
    [rclone]=/usr/bin/rclone
    [openssh-server]=/usr/sbin/sshd
    [jq]=/usr/bin/jq
)
missing=()
for package in chromium rsync rclone openssh-server jq; do
    [ -x "${PROBES[$package]}" ] || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing Debian packages: ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        (apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null) \
            || echo "warning: apt-get could not install ${missing[*]}; continuing without them" >&2
    else
        echo "warning: not installed: ${missing[*]} (needs root: apt-get install ${missing[*]});" \
            "continuing: the browser tests skip without chromium, the panel API example fails without jq" >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -c scripts/test-constraints.txt -e ".[all,test]"

ruff check .
ruff format --check .
mypy
# The import layers (pyproject.toml [tool.importlinter], explained in docs/architecture.md). The install
# without extras is proven by tests/test_no_extras_install.py, which builds its own venv inside the suite.
lint-imports

python -m pytest -q "$@"
