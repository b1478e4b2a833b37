#!/usr/bin/env bash
# Set up everything the grader needs on a Debian/Ubuntu machine; safe to run again.
# Creates .venv with exactly the packages of requirements.lock (torch, torchvision, …) and the
# `grader` command, and installs bubblewrap, the default sandbox. With GRADER_DOCKER=1 it also installs Docker, starts
# dockerd and builds the runner image offline (scripts/docker-image.sh). With GRADER_BROWSER=1 it installs
# Chromium and a Chinese font for the report tests, and the JUnit schema they validate against.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c "import venv, ensurepip" 2>/dev/null || need_apt+=(python3-venv)
command -v bwrap >/dev/null || need_apt+=(bubblewrap)
command -v ps >/dev/null || need_apt+=(procps)
if [ "${GRADER_DOCKER:-0}" = 1 ]; then
    command -v dockerd >/dev/null || need_apt+=(docker.io)
    command -v debootstrap >/dev/null || need_apt+=(debootstrap)
fi
if [ "${GRADER_BROWSER:-0}" = 1 ]; then  # the report tests in a real browser, with Chinese fonts
    command -v chromium >/dev/null || need_apt+=(chromium)
    fc-list 2>/dev/null | grep -qi "wenquanyi" || need_apt+=(fonts-wqy-microhei)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need_apt[@]}"
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
log=.venv/setup.log
# The grading host: the course's lock installed exactly, and the tool (with its host extra) on top.
if ! { .venv/bin/python -m pip install --upgrade pip \
       && .venv/bin/python -m pip install -r requirements.lock -c requirements.lock -e '.[host,dev,ray,nbgrader,deploy]' ; } >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "setup failed: pip could not install the packages (full log: $log)" >&2
    exit 1
fi
.venv/bin/grader --help >/dev/null
if [ "${GRADER_BROWSER:-0}" = 1 ] && [ ! -s .venv/share/junit-10.xsd ]; then
    # The JUnit schema the report tests validate against: the one pytest's own source distribution
    # tests its JUnit XML with (from Jenkins' xunit plugin).
    scratch=$(mktemp -d)
    pytest_version=$(.venv/bin/python -c "import pytest; print(pytest.__version__)")
    .venv/bin/python -m pip download -q --no-deps --no-binary :all: "pytest==$pytest_version" -d "$scratch" >>"$log" 2>&1
    mkdir -p .venv/share
    tar -xzf "$scratch"/pytest-*.tar.gz -C "$scratch" --wildcards '*/testing/example_scripts/junit-10.xsd'
    cp "$scratch"/pytest-*/testing/example_scripts/junit-10.xsd .venv/share/junit-10.xsd
    rm -rf "$scratch"
fi
if [ "${GRADER_DOCKER:-0}" = 1 ]; then
    bash scripts/docker-image.sh
fi
echo "setup done: $(.venv/bin/python -c 'import torch; print("torch", torch.__version__)')"
