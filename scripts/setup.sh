#!/usr/bin/env bash
# Set up everything the grader needs on a Debian/Ubuntu machine; safe to run again.
# Creates .venv with exactly the packages of requirements.lock (torch, torchvision, …) and the
# `grader` command, and installs bubblewrap, the default sandbox. With GRADER_DOCKER=1 it also installs Docker, starts
# dockerd and builds the runner image offline (scripts/docker-image.sh).
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
       && .venv/bin/python -m pip install -r requirements.lock -c requirements.lock -e '.[host,dev,ray,nbgrader]' ; } >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "setup failed: pip could not install the packages (full log: $log)" >&2
    exit 1
fi
.venv/bin/grader --help >/dev/null
if [ "${GRADER_DOCKER:-0}" = 1 ]; then
    bash scripts/docker-image.sh
fi
echo "setup done: $(.venv/bin/python -c 'import torch; print("torch", torch.__version__)')"
