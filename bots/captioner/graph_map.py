"""Load a model whose graph is one static HCLG.fst with the graph memory-mapped.

A static graph (captioner.graph = "static") is about 1 GB of arc arrays. Read into
the heap, every captioner process holds all of it, although decoding touches only
the part of the graph its speech reaches. Mapped, the pages live in the kernel's page
cache: a process's resident memory counts only the pages its decoder has touched,
processes on one host share them, and the kernel can drop them under pressure and
read them again from disk.

OpenFst maps a ``const`` FST when its ``--fst_read_mode`` flag is ``map`` and the
file's arrays are aligned (``fstconvert --fst_align``, which graphs.py does): it
opens the file by the source name it was given and maps it at the stream's offset
(``MappedFile::Map``). Vosk reads HCLG.fst through Kaldi's ``ReadFstKaldiGeneric``,
which gives OpenFst the stream and the name ``<unspecified>``. Nothing in Vosk's API
sets the flag or the name, hence this module, written by hand:

- the flag is set through OpenFst's own ``SetFlags``, which libvosk exports;
- the model is loaded in a thread of its own whose working directory (unshared from
  the process with ``unshare(CLONE_FS)``, so no other thread sees it) is a private
  folder in which ``<unspecified>`` links to the graph.

``load`` checks /proc/self/maps afterwards: if Vosk or OpenFst ever stop honouring
this, the graph is read into memory as before and a warning says so.
"""

from __future__ import annotations

import ctypes
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import vosk

log = logging.getLogger(__name__)

SOURCE_NAME = "<unspecified>"  # the name Kaldi's ReadFstKaldiGeneric gives OpenFst
# OpenFst's SetFlags(const char*, int*, char***, bool, const char*), mangled
SET_FLAGS = "_Z8SetFlagsPKcPiPPPcbS0_"
CLONE_FS = 0x200  # linux/sched.h

_flags_lock = threading.Lock()  # the flag is process-wide: one mapped load at a time


def static_graph(model: Path) -> Path | None:
    """The model's graph/HCLG.fst, if it has one."""
    hclg = model / "graph" / "HCLG.fst"
    return hclg if hclg.is_file() else None


def is_mapped(path: Path) -> bool:
    """Whether this process maps ``path`` (Linux /proc/self/maps; False elsewhere)."""
    target = str(path.resolve())
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return any(line.rstrip("\n").endswith(" " + target) for line in maps)
    except OSError:
        return False


def load(model: Path) -> vosk.Model:
    """``vosk.Model(model)``; a static graph in it is memory-mapped when possible."""
    hclg = static_graph(model)
    if hclg is None:
        return vosk.Model(str(model))
    set_flags = _set_flags()
    if set_flags is None:
        log.warning("libvosk exports no OpenFst SetFlags: %s is read into memory", hclg)
        return vosk.Model(str(model))
    _prefetch(hclg)
    with _flags_lock, tempfile.TemporaryDirectory(prefix="plenary-graph-") as workdir:
        (Path(workdir) / SOURCE_NAME).symlink_to(hclg.resolve())
        set_flags("map")
        try:
            loaded = _in_own_directory(workdir, lambda: vosk.Model(str(model)))
        finally:
            set_flags("read")
    if is_mapped(hclg):
        log.info("%s is memory-mapped", hclg)
    else:
        log.warning("%s could not be memory-mapped and was read into memory", hclg)
    return loaded


def _set_flags() -> _FlagSetter | None:
    library = Path(vosk.__file__).parent / "libvosk.so"
    try:
        function = getattr(ctypes.CDLL(str(library)), SET_FLAGS)
    except (OSError, AttributeError):
        return None
    return _FlagSetter(function)


class _FlagSetter:
    """Sets OpenFst's ``--fst_read_mode`` the way its command-line tools do."""

    def __init__(self, function: Any) -> None:  # a ctypes function of libvosk
        function.restype = None
        function.argtypes = [
            ctypes.c_char_p,
            ctypes.POINTER(ctypes.c_int),
            ctypes.POINTER(ctypes.POINTER(ctypes.c_char_p)),
            ctypes.c_bool,
            ctypes.c_char_p,
        ]
        self._function = function

    def __call__(self, mode: str) -> None:
        args = [b"plenary", f"--fst_read_mode={mode}".encode()]
        argv = (ctypes.c_char_p * 3)(*args, None)
        argc = ctypes.c_int(len(args))
        pointer = ctypes.cast(argv, ctypes.POINTER(ctypes.c_char_p))
        self._function(b"plenary", ctypes.byref(argc), ctypes.byref(pointer), True, b"")


def _in_own_directory(workdir: str, load: Callable[[], vosk.Model]) -> vosk.Model:
    """Run ``load`` in a new thread whose working directory is ``workdir``, unseen by
    every other thread of the process. Where the thread cannot have a directory of its
    own, ``load`` runs without one (and the graph is read, not mapped)."""
    result: list[vosk.Model] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(CLONE_FS) == 0:
                os.chdir(workdir)
            else:
                log.warning("unshare(CLONE_FS): %s", os.strerror(ctypes.get_errno()))
            result.append(load())
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="plenary-graph-load")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def _prefetch(path: Path) -> None:
    """Ask the kernel to read the graph into the page cache ahead of the first
    utterances (after a reboot it would otherwise come in page fault by page fault)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
    except OSError:
        pass
    finally:
        os.close(fd)
