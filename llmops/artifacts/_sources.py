"""What a push accepts: the files under a source folder, each checked before anything is read.

No links (a push stores what is there, never what a link points at), devices, sockets or fifos;
no tool state (``.git``, ``.llmops``); no pickle-based weights unless allowed (loading them runs
code), whatever the file's name; and only safe relative paths, which pulls check again.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from llmops.artifacts.tensors import UnsafeFileError

__all__ = ["PICKLE_SUFFIXES", "TOOL_STATE", "check_relpath", "scan"]

PICKLE_SUFFIXES = frozenset(
    {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".dill", ".pkl.gz"}
)
"""Weight formats that unpickle (run code) when loaded; refused unless ``allow_pickle``.
Files under other names are refused too when their content is a pickle (see ``_pickled``)."""

TOOL_STATE = frozenset({".git", ".llmops"})
"""Folders of tools, not content: left out of pushes, and refused in manifests (a pull must
never write a repository's hooks or a workspace's registry)."""


def check_relpath(path: str) -> str:
    """Return ``path`` if it is a safe relative POSIX path inside an artifact, else raise.

    Raises:
        UnsafeFileError: Absolute, parent references, backslashes, empty or control characters.
    """
    parts = PurePosixPath(path).parts
    if any("\ud800" <= ch <= "\udfff" for ch in path):
        raise UnsafeFileError(
            f"file name {path!a} is not valid UTF-8",
            hint="rename the file (artifact paths are UTF-8 text)",
        )
    if any(part.lower() in TOOL_STATE for part in path.split("/")):
        raise UnsafeFileError(
            f"artifact path {path!r} is inside {sorted(TOOL_STATE)} (tool state, never part of"
            " an artifact)",
            hint="pushes leave .git and .llmops folders out; this manifest was made otherwise",
        )
    bad = (
        not path
        or path.startswith("/")
        or "\\" in path
        or any(p in ("..", ".", "") for p in path.split("/"))
        or any(ord(ch) < 32 for ch in path)
        or (parts and parts[0].startswith(".llmops-pull-"))
    )
    if bad:
        raise UnsafeFileError(
            f"unsafe path {path!r} in artifact",
            hint="artifact paths must be relative, without '..', '\\' or control characters",
        )
    return path


def scan(
    source: Path, *, allow_pickle: bool, follow_links: bool = False
) -> list[tuple[str, Path, os.stat_result]]:
    """Every file under ``source`` with its relative path and stat. Links are refused (a push
    stores what is there, never what a link points at) unless ``follow_links``, used when only
    hashing a folder such as a Hugging Face cache snapshot, whose files are links to blobs."""
    if source.is_symlink() and not follow_links:
        raise UnsafeFileError(f"{source} is a symbolic link", hint="push the real folder or file")
    if source.is_file():
        return [(source.name, source, source.stat())]
    if not source.is_dir():
        raise UnsafeFileError(f"{source} does not exist or is not a file or folder")
    found = []
    for root, dirs, names in os.walk(source, followlinks=follow_links):
        dirs[:] = sorted(d for d in dirs if d.lower() not in TOOL_STATE)  # never pushed
        files = [f for f in names if f.lower() not in TOOL_STATE]
        for name in sorted(dirs + files):
            path = Path(root) / name
            st = path.stat() if follow_links else path.lstat()
            if stat.S_ISDIR(st.st_mode):
                continue
            rel = path.relative_to(source).as_posix()
            if stat.S_ISLNK(st.st_mode):
                raise UnsafeFileError(
                    f"{path} is a symbolic link", hint="replace it with the file it points to"
                )
            if not stat.S_ISREG(st.st_mode):
                raise UnsafeFileError(f"{path} is not a regular file (device, socket or fifo)")
            found.append((check_relpath(rel), path, st))
    found.sort(key=lambda item: item[0])
    if not allow_pickle:
        pickles = [rel for rel, path, _ in found if _pickled(rel, path)]
        if pickles:
            raise UnsafeFileError(
                f"refusing pickle-based weight file(s) {', '.join(pickles[:5])}: loading them can"
                " run arbitrary code",
                hint="convert to safetensors (transformers: save_pretrained(...,"
                " safe_serialization=True)), or pass --allow-pickle if you trust the source",
            )
    return found


def _pickled(rel: str, path: Path) -> bool:
    """Whether loading the file would unpickle: a pickle suffix, or pickle content under any
    name (a pickle stream, a zip holding one as torch saves, a numpy object array)."""
    if Path(rel).suffix.lower() in PICKLE_SUFFIXES:
        return True
    if rel.lower().endswith(".safetensors"):
        return False  # its header is validated; it cannot hold code
    try:
        with path.open("rb") as fh:
            head = fh.read(512)
    except OSError:
        return False
    if head.startswith(b"PK\x03\x04"):
        return _zip_holds_pickle(path)
    return _pickle_bytes(head)


def _pickle_bytes(head: bytes) -> bool:
    """A pickle stream (protocol 2-5), or a ``.npy`` array of Python objects."""
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True
    return head.startswith(b"\x93NUMPY") and b"'descr': '|O'" in head


def _zip_holds_pickle(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist()[:10_000]:
                if name.endswith((".pkl", ".pickle")):
                    return True  # torch.save's zip format (data.pkl inside)
                if name.endswith(".npy"):
                    with archive.open(name) as member:
                        if _pickle_bytes(member.read(512)):
                            return True
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    return False
