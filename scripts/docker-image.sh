#!/usr/bin/env bash
# Build the docker sandbox's images on this machine, with no container registry:
#   debootstrap → docker import (torch-grader-base:bookworm), pip download (wheelhouse),
#   docker build with the wheelhouse in the context and no network (torch-grader-runner:<version>).
# Idempotent: steps whose result exists are skipped; caches live in /var/cache/torch-grader.
# Usage: scripts/docker-image.sh [all|base|wheelhouse|runner] [--force]
set -euo pipefail
cd "$(dirname "$0")/.."

python=python3
[ -x .venv/bin/python ] && python=.venv/bin/python

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! docker info >/dev/null 2>&1; then
    command -v dockerd >/dev/null || { echo "dockerd not found: apt-get install docker.io" >&2; exit 1; }
    echo "starting dockerd (log: /tmp/dockerd.log)"
    as_root sh -c 'nohup dockerd >/tmp/dockerd.log 2>&1 &'
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || { tail -n 20 /tmp/dockerd.log >&2; echo "dockerd did not come up in 60 s" >&2; exit 1; }
fi

start=$(date +%s)
"$python" -m grader.sandbox.image "$@"
echo "docker-image.sh done in $(( $(date +%s) - start )) s"
