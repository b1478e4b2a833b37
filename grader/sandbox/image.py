"""Build the Docker images the docker sandbox runs, with no container registry and no network in the build.

Three steps, each idempotent and cached under ``/var/cache/torch-grader``:

1. :func:`build_base_image`: ``debootstrap --variant=minbase`` a Debian bookworm root with
   python3, python3-pip and ca-certificates from the host's Debian mirror (apt's sources, or
   ``--mirror``), tar it and
   ``docker import`` it as ``torch-grader-base:bookworm``.
2. :func:`build_wheelhouse`: ``pip download`` the worker's packages (binary wheels only) at the
   versions of the course's ``requirements.lock``, from the host's package index (pip's own
   configuration, or ``--index-url``).
3. :func:`build_runner_image`: build ``torch-grader-runner:<version>`` from
   ``grader/sandbox/image/Dockerfile`` with the wheelhouse inside the build context (the docker
   SDK uses the legacy builder, which has no build-time mounts), ``network_mode="none"``.

The image holds Python and the pinned packages only. The worker package is bind-mounted
read-only at run time (``/opt/grader-lib``), so changing probes does not need a rebuild, and
nothing of ``solutions/`` or ``autotests/`` is ever in the build context.

``python -m grader.sandbox.image [all|base|wheelhouse|runner]`` runs the steps and prints timings.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Iterator

CACHE_DIR = Path(os.environ.get("TORCH_GRADER_CACHE", "/var/cache/torch-grader"))
IMAGE_DIR = Path(__file__).with_name("image")
DEBIAN_SUITE = "bookworm"
BASE_IMAGE = f"torch-grader-base:{DEBIAN_SUITE}"
BASE_PACKAGES = ("python3", "python3-pip", "ca-certificates")
RUNNER_REPOSITORY = "torch-grader-runner"
PYTHON_VERSION = "3.11"  # bookworm's python3; the wheels must match it
WORKER_PACKAGES = ("torch", "torchvision", "numpy", "safetensors", "onnx", "onnxscript", "onnxruntime")  # what the worker imports; versions from the lock
LOCK_FILE = "requirements.lock"
LABEL = "torch-grader"  # value: "base", "runner" or "build-stage"; workers use "worker"

Log = Callable[[str], None]


class ImageBuildError(RuntimeError):
    """A build step failed; the message says which and how to fix it."""


def _say(message: str) -> None:
    print(message, flush=True)


def project_version() -> str:
    from grader import __version__

    return __version__


@dataclass(frozen=True)
class Lock:
    """The exact versions of the grading environment (``requirements.lock``)."""

    text: str
    pins: dict[str, str]  # normalised name -> "name==version"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def worker_pins(self) -> list[str]:
        missing = [name for name in WORKER_PACKAGES if name not in self.pins]
        if missing:
            raise ImageBuildError(f"{LOCK_FILE} pins no version of {', '.join(missing)}: add them")
        return [self.pins[name] for name in WORKER_PACKAGES]


def read_lock(course_root: Path) -> Lock:
    """The course's ``requirements.lock``; every line ``name==version`` (comments allowed)."""
    path = Path(course_root) / LOCK_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        raise ImageBuildError(f"no {LOCK_FILE} in {course_root}: the image is built from the course's lock file") from None
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not version:
            raise ImageBuildError(f"{path}: {line!r} is not an exact pin (name==version)")
        pins[re.sub(r"[-_.]+", "-", name).lower()] = line
    return Lock(text, pins)


def runner_tag() -> str:
    return f"{RUNNER_REPOSITORY}:{project_version()}"


@contextlib.contextmanager
def _timed(what: str, log: Log, timings: dict[str, float] | None = None) -> Iterator[None]:
    start = time.monotonic()
    yield
    took = time.monotonic() - start
    if timings is not None:
        timings[what] = took
    log(f"{what}: {took:.1f} s")


# -- base image -----------------------------------------------------------------------------

def debian_mirror() -> str:
    """The Debian mirror apt uses on this host (``TORCH_GRADER_DEBIAN_MIRROR`` overrides).

    No address is built in: a host whose apt sources name no Debian archive must say which to use.
    """
    override = os.environ.get("TORCH_GRADER_DEBIAN_MIRROR")
    if override:
        return override.rstrip("/")
    sources: list[Path] = [Path("/etc/apt/sources.list")]
    folder = Path("/etc/apt/sources.list.d")
    if folder.is_dir():
        sources += sorted(p for p in folder.iterdir() if p.suffix in (".list", ".sources"))
    for path in sources:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for uri in _debian_uris(text, deb822=path.suffix == ".sources"):
            return uri
    raise ImageBuildError("no Debian mirror found in this host's apt sources (/etc/apt/sources.list, "
                          "/etc/apt/sources.list.d): pass --mirror URL or set TORCH_GRADER_DEBIAN_MIRROR")


def _debian_uris(text: str, deb822: bool) -> Iterator[str]:
    """URIs of the main Debian archive (not security, not third-party) in one sources file."""
    if deb822:
        for stanza in re.split(r"\n\s*\n", text):
            fields = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if fields.get("enabled", "yes").lower() == "no" or "deb" not in fields.get("types", "").split():
                continue
            for uri in fields.get("uris", "").split():
                if _is_debian_archive(uri) and DEBIAN_SUITE in fields.get("suites", "").split():
                    yield uri.rstrip("/")
    else:
        for line in text.splitlines():
            parts = re.sub(r"\[[^]]*\]", "", line).split()
            if len(parts) >= 3 and parts[0] == "deb" and _is_debian_archive(parts[1]) and parts[2] == DEBIAN_SUITE:
                yield parts[1].rstrip("/")


def _is_debian_archive(uri: str) -> bool:
    return uri.startswith(("http://", "https://")) and uri.rstrip("/").endswith("/debian")


def image_exists(client: Any, name: str) -> Any | None:
    import docker.errors

    try:
        return client.images.get(name)
    except docker.errors.ImageNotFound:
        return None


def _run(command: list[str], what: str, log: Log) -> None:
    log("$ " + " ".join(command))
    proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-30:])
        raise ImageBuildError(f"{what} failed (exit {proc.returncode}):\n{tail}")


def build_base_image(client: Any, *, mirror: str | None = None, cache_dir: Path = CACHE_DIR,
                     force: bool = False, log: Log = _say) -> str:
    """Make ``torch-grader-base:bookworm`` locally (debootstrap → docker import); returns its id.

    Does nothing when the image exists. The root filesystem tarball is kept in ``cache_dir`` so a
    rerun (after ``docker rmi`` or on a fresh engine on the same machine) only imports it.
    """
    existing = None if force else image_exists(client, BASE_IMAGE)
    if existing is not None:
        log(f"base image {BASE_IMAGE} exists: {existing.id}")
        return existing.id
    cache_dir.mkdir(parents=True, exist_ok=True)
    tarball = cache_dir / f"rootfs-{DEBIAN_SUITE}-minbase.tar"
    if force or not tarball.is_file():
        if shutil.which("debootstrap") is None:
            raise ImageBuildError("debootstrap is not installed: apt-get install debootstrap")
        if os.geteuid() != 0:
            raise ImageBuildError("debootstrap needs root: run `sudo grader image base`")
        mirror = mirror or debian_mirror()
        root = Path(tempfile.mkdtemp(prefix="rootfs-", dir=cache_dir))
        try:
            _run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
                  DEBIAN_SUITE, str(root), mirror], "debootstrap", log)
            _slim_rootfs(root)
            partial = tarball.with_suffix(".tar.partial")
            _run(["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-cf", str(partial), "."],
                 "tar of the root filesystem", log)
            partial.replace(tarball)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    else:
        log(f"using cached root filesystem {tarball}")
    changes = [
        "ENV PATH=/usr/local/bin:/usr/bin:/bin",
        "ENV LANG=C.UTF-8",
        f"LABEL {LABEL}=base",
        f"LABEL {LABEL}.debian={DEBIAN_SUITE}",
        'CMD ["python3"]',
    ]
    client.api.import_image_from_file(str(tarball), repository=BASE_IMAGE.split(":")[0],
                                      tag=BASE_IMAGE.split(":")[1], changes=changes)
    image = client.images.get(BASE_IMAGE)
    log(f"base image {BASE_IMAGE}: {image.id}")
    return image.id


def _slim_rootfs(root: Path) -> None:
    """Drop downloaded packages, apt lists and docs: they only make the image bigger."""
    for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*",
                    "usr/share/doc/*", "usr/share/man/*", "usr/share/info/*", "var/log/*.log"):
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            elif path.name != "lock":
                path.unlink(missing_ok=True)


# -- wheelhouse -----------------------------------------------------------------------------

MANIFEST = ".complete.json"


def _wheelhouse_manifest(directory: Path, lock: Lock) -> dict[str, Any] | None:
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("lock") != lock.sha256 or manifest.get("python") != PYTHON_VERSION:
        return None
    for name, size in manifest.get("files", {}).items():
        path = directory / name
        if not path.is_file() or path.stat().st_size != size:
            return None
    return manifest


def build_wheelhouse(lock: Lock, directory: Path = CACHE_DIR / "wheelhouse", *, index_url: str | None = None,
                     log: Log = _say) -> Path:
    """``pip download`` the worker's packages, pinned by ``lock``, as wheels into ``directory``.

    pip reads the host's own configuration (index, mirrors, certificates); ``index_url``
    overrides the index. Skipped when a manifest written by an earlier complete download for the
    same lock still lists every file with its size.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if _wheelhouse_manifest(directory, lock) is not None:
        log(f"wheelhouse {directory} is complete")
        return directory
    (directory / MANIFEST).unlink(missing_ok=True)
    (directory / LOCK_FILE).write_text(lock.text)
    command = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--python-version", PYTHON_VERSION,
               "--disable-pip-version-check", "-d", str(directory), "-c", str(directory / LOCK_FILE),
               *(["--index-url", index_url] if index_url else []), *lock.worker_pins()]
    _run(command, "pip download", log)
    files = {p.name: p.stat().st_size for p in sorted(directory.glob("*.whl"))}
    manifest = {"lock": lock.sha256, "python": PYTHON_VERSION, "files": files}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1))
    total = sum(files.values())
    log(f"wheelhouse {directory}: {len(files)} wheels, {total / 1e9:.2f} GB")
    return directory


# -- runner image ---------------------------------------------------------------------------

def _recipe_digest(base_id: str, lock: Lock, wheel_names: list[str]) -> str:
    """What the runner image is made of; an image with the same digest needs no rebuild."""
    digest = hashlib.sha256()
    for path in sorted(IMAGE_DIR.iterdir()):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(base_id.encode() + b"\0" + lock.sha256.encode() + b"\0" + "\n".join(wheel_names).encode())
    return digest.hexdigest()


def find_runner_image(client: Any, tag: str | None = None) -> Any | None:
    return image_exists(client, tag or runner_tag())


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def build_runner_image(client: Any, *, lock: Lock, wheelhouse: Path | None = None, tag: str | None = None,
                       force: bool = False, mirror: str | None = None, index_url: str | None = None,
                       log: Log = _say, timings: dict[str, float] | None = None) -> str:
    """Build the runner image from ``lock`` (base image and wheelhouse first if missing); returns the image id."""
    tag = tag or runner_tag()
    base_id = build_base_image(client, mirror=mirror, log=log)
    wheelhouse = build_wheelhouse(lock, wheelhouse or CACHE_DIR / "wheelhouse", index_url=index_url, log=log)
    manifest = _wheelhouse_manifest(wheelhouse, lock)
    assert manifest is not None
    wheels = sorted(manifest["files"])
    recipe = _recipe_digest(base_id, lock, wheels)
    existing = None if force else find_runner_image(client, tag)
    if existing is not None and existing.labels.get(f"{LABEL}.recipe") == recipe:
        log(f"runner image {tag} is up to date: {existing.id}")
        return existing.id

    # The context lives beside the wheelhouse so the wheels can be hard links (same filesystem).
    context = Path(tempfile.mkdtemp(prefix="build-context-", dir=wheelhouse.parent))
    try:
        with _timed("assemble build context", log, timings):
            for path in IMAGE_DIR.iterdir():
                if path.is_file():
                    shutil.copy2(path, context / path.name)
            (context / "wheels").mkdir()
            for name in wheels:
                _link_or_copy(wheelhouse / name, context / "wheels" / name)
            (context / "wheels" / "requirements.txt").write_text("\n".join(lock.worker_pins()) + "\n")
            (context / "wheels" / LOCK_FILE).write_text(lock.text)
        labels = {
            LABEL: "runner",
            f"{LABEL}.version": project_version(),
            f"{LABEL}.packages": " ".join(lock.worker_pins()),
            f"{LABEL}.lock": lock.sha256,
            f"{LABEL}.base": base_id,
            f"{LABEL}.recipe": recipe,
            "org.opencontainers.image.title": "torch-grader runner",
            "org.opencontainers.image.description":
                "Python and the pinned torch stack; the worker is mounted at run time",
        }
        with _timed("docker build (legacy builder, network none)", log, timings):
            image_id = _docker_build(client, context, tag, labels, {"BASE_IMAGE": BASE_IMAGE}, log)
    finally:
        shutil.rmtree(context, ignore_errors=True)
    # The install stage (with the wheels) is an untagged image now: free its space, and the
    # previous runner image's too unless a container still uses it.
    with contextlib.suppress(Exception):
        client.images.prune(filters={"dangling": True, "label": f"{LABEL}=build-stage"})
    if existing is not None and existing.id != image_id:
        with contextlib.suppress(Exception):
            client.images.remove(existing.id)
    log(f"runner image {tag}: {image_id}")
    return image_id


def _docker_build(client: Any, context: Path, tag: str, labels: dict[str, str], buildargs: dict[str, str],
                  log: Log) -> str:
    stream = client.api.build(path=str(context), tag=tag, labels=labels, buildargs=buildargs, rm=True,
                              forcerm=True, pull=False, network_mode="none", decode=True, timeout=3600,
                              use_config_proxy=False)
    image_id = None
    for chunk in stream:
        if "error" in chunk:
            raise ImageBuildError(f"docker build failed: {chunk['error'].strip()}")
        if "aux" in chunk and isinstance(chunk["aux"], dict):
            image_id = chunk["aux"].get("ID", image_id)
        text = chunk.get("stream", "").rstrip()
        if text:
            log(text)
    image = client.images.get(tag)
    return image_id if image_id == image.id else image.id


# -- command line ---------------------------------------------------------------------------

def docker_client(timeout: int = 600) -> Any:
    import docker

    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means: no engine
        raise ImageBuildError(
            f"no Docker engine answers ({exc}); start it (`dockerd &` or `systemctl start docker`)") from None
    return client


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader.sandbox.image", description=__doc__.split("\n")[0])
    parser.add_argument("step", nargs="?", default="all", choices=["all", "base", "wheelhouse", "runner"])
    parser.add_argument("--force", action="store_true", help="rebuild even if the image exists")
    parser.add_argument("--course", type=Path, help="the course whose requirements.lock pins the image "
                        "(default: the nearest folder upward with course.toml)")
    parser.add_argument("--mirror", help="Debian mirror (default: this host's apt sources)")
    parser.add_argument("--index-url", help="Python package index (default: this host's pip configuration)")
    args = parser.parse_args(argv)
    timings: dict[str, float] = {}
    from grader.catalog import CourseNotFound, find_course

    try:
        lock = read_lock(find_course(args.course).root)
        if args.step == "wheelhouse":
            with _timed("wheelhouse", _say, timings):
                build_wheelhouse(lock, index_url=args.index_url)
            return 0
        client = docker_client()
        with _timed("base image", _say, timings):
            build_base_image(client, mirror=args.mirror, force=args.force and args.step == "base")
        if args.step == "base":
            return 0
        with _timed("wheelhouse", _say, timings):
            build_wheelhouse(lock, index_url=args.index_url)
        with _timed("runner image", _say, timings):
            image_id = build_runner_image(client, lock=lock, force=args.force, mirror=args.mirror,
                                          index_url=args.index_url, timings=timings)
    except (ImageBuildError, CourseNotFound) as exc:
        print(f"grader image: {exc}", file=sys.stderr)
        return 2
    print(f"image: {runner_tag()} {image_id}")
    print("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
