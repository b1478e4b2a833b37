#!/bin/sh
# Runs once inside the runner image build (as root, no network).
set -eu

# Mount points for what the grader binds or mounts at run time.
mkdir -p /submission /opt/grader-lib /home/worker
chmod 0755 /submission /opt/grader-lib
chmod 1777 /home/worker

# Nothing setuid/setgid is needed by a Python worker: drop the bits (no-new-privileges is also set).
find / -xdev -perm /6000 -type f -exec chmod ug-s {} + 2>/dev/null || true

# The worker runs as uid/gid 65534 and is the only account the image knows: no root entry or
# password hashes for student code to read (the container user is numeric, nothing needs them).
printf 'nobody:x:65534:65534:nobody:/home/worker:/usr/sbin/nologin\n' >/etc/passwd
printf 'nogroup:x:65534:\n' >/etc/group
: >/etc/shadow
: >/etc/gshadow

# Fail the build now if the pinned stack does not import.
python3 -I -c "import torch, torchvision, numpy, safetensors; print('runner image:', 'python', __import__('sys').version.split()[0], 'torch', torch.__version__, 'torchvision', torchvision.__version__, 'numpy', numpy.__version__)"
