"""Faster decoding graphs for Vosk's lookahead models (graph/HCLr.fst + Gr.fst).

Lookahead models, such as the Korean one, ship the language model as OpenFst's
``ngram`` type: LOUDS-compressed, so each arc lookup during decoding is a rank/select
over bit vectors; and every recognizer composes HCLr with it on the fly, into a cache
of its own that only grows. ``prepared`` builds, once per model, a folder in the cache
that links every file of the model and adds:

- ``const`` (captioner.graph): Gr.fst as a ``const`` FST (sorted arc arrays), and the
  word list (words.txt) Vosk otherwise reads from it. Same words, about a quarter
  less CPU, 10 MB more;
- ``static`` (the default): that, and HCLG.fst, the two composed once (Vosk loads an
  HCLG.fst in preference): no composition left to decode, about half the CPU of
  ``const``; ~1 GB on disk, memory-mapped (graph_map.py), so a process holds only the
  pages it decodes through.

Measured in docs/benchmarks.md ("Decoding graph"). The model's own folder is never
written to. No Python library reads or writes OpenFst's ngram or lookahead types, so
the conversion runs OpenFst's own command-line tools (Debian: libfst-tools and
libfst22-plugins-base), without a shell. ``fst_type`` reads a file's type from its
header (no I/O of its own), so a model that needs nothing never meets the tools.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal

GraphMode = Literal["lookahead", "const", "static"]

log = logging.getLogger(__name__)

FST_MAGIC = 2125659606  # OpenFst's FstHeader magic number
TOOLS = ("fstprint", "fstcompile", "fstarcsort", "fstconvert", "fstcompose", "fstrelabel")
FSTPRINT = ["fstprint", "--show_weight_one=false"]
LAYOUT = "aligned"  # in the cache key: graphs written before HCLG.fst was aligned are rebuilt
PLUGIN_DIRS = ("/usr/lib/x86_64-linux-gnu/fst", "/usr/lib/aarch64-linux-gnu/fst", "/usr/lib/fst")


class GraphError(Exception):
    """The graph could not be converted; the message says why (the model still works)."""


def fst_type(header: bytes) -> str | None:
    """The FST type named by an OpenFst file header (``ngram``, ``const``, ``vector``,
    ``olabel_lookahead``…), or None when ``header`` is not one. The header starts with
    the magic number and then the type as a length-prefixed string (OpenFst fst.h,
    FstHeader::Read)."""
    if len(header) < 8:
        return None
    magic, size = struct.unpack_from("<iI", header)
    if magic != FST_MAGIC or not 0 < size <= 64 or len(header) < 8 + size:
        return None
    try:
        return header[8 : 8 + size].decode("ascii")
    except UnicodeDecodeError:
        return None


def needs_conversion(model: Path) -> bool:
    """Whether the model's language model is an ngram-type Gr.fst (a lookahead model)."""
    grammar = model / "graph" / "Gr.fst"
    if not grammar.is_file():
        return False
    with grammar.open("rb") as f:
        return fst_type(f.read(80)) == "ngram"


def plugin_dir() -> Path | None:
    """The folder holding OpenFst's ngram-fst.so plugin, which the tools need to read Gr.fst."""
    for root in PLUGIN_DIRS:
        for found in [*sorted(Path(root).glob("*/ngram-fst.so")), Path(root) / "ngram-fst.so"]:
            if found.is_file():
                return found.parent
    return None


def prepared(model: Path, cache: Path, mode: GraphMode = "const") -> Path:
    """The folder to load ``model`` from: ``model`` itself if its graph needs nothing
    (or ``mode`` is ``lookahead``), else the converted copy under ``cache``, built on
    the first call (``const``: ~10 s; ``static``: ~3 min and ~5 GB of memory). Raises
    GraphError when the tools are missing or fail."""
    if mode == "lookahead" or not needs_conversion(model):
        return model
    grammar = model / "graph" / "Gr.fst"
    stat = grammar.stat()
    key = hashlib.sha256(f"{model.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{LAYOUT}".encode())
    target = cache.expanduser() / f"{model.name}-{mode}-{key.hexdigest()[:16]}"
    done = target / "graph" / ("HCLG.fst" if mode == "static" else "Gr.fst")
    if done.is_file():
        return target
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    plugins = plugin_dir()
    if missing or plugins is None:
        what = ", ".join(missing) if missing else "OpenFst's ngram-fst.so plugin"
        raise GraphError(
            f"{what} not found: install the Debian packages libfst-tools and "
            "libfst22-plugins-base to convert the decoding graph (captioner.graph)"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive(target.with_name(f"{target.name}.lock")):
            if not done.is_file():  # another process may have built it while we waited
                _build(model, target, mode, plugins)
    except OSError as exc:
        if not done.is_file():
            raise GraphError(f"could not write the converted graph under {cache}: {exc}") from exc
    return target


@contextlib.contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """Hold ``lock`` (flock) so that processes starting together (a captioner and
    ``plenary captioner prepare``, or two workers) build a graph once, not side by side:
    a static graph takes ~5 GB. The file goes with the lock."""
    with lock.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)


def _build(model: Path, target: Path, mode: GraphMode, plugins: Path) -> None:
    building = target.with_name(f"{target.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    cost = "about 3 minutes and 5 GB of memory" if mode == "static" else "about 10 s"
    log.info(
        "building the %s decoding graph of %s once, into %s: %s (captioner.graph)",
        mode,
        model,
        target.parent,
        cost,
    )
    env = dict(os.environ, LD_LIBRARY_PATH=str(plugins))
    try:
        _link_model(model, building)
        _convert(model / "graph" / "Gr.fst", building / "graph", env)
        if mode == "static":
            _compose(model / "graph", building / "graph", env)
        building.rename(target)  # whole or not at all
    finally:
        shutil.rmtree(building, ignore_errors=True)
    log.info("decoding graph ready in %s", target)


def _link_model(model: Path, into: Path) -> None:
    """``into`` mirrors ``model`` with symlinks, except graph/Gr.fst (converted there)."""
    (into / "graph").mkdir(parents=True)
    for entry in model.iterdir():
        if entry.name != "graph":
            (into / entry.name).symlink_to(entry.resolve())
    for entry in (model / "graph").iterdir():
        if entry.name != "Gr.fst":
            (into / "graph" / entry.name).symlink_to(entry.resolve())


def _convert(grammar: Path, graph: Path, env: dict[str, str]) -> None:
    """The word list, then fstprint --numeric | fstcompile | fstarcsort | fstconvert
    --fst_type=const. Numbers, not symbols: OpenFst 1.7 writes a word table into a
    converted ngram FST that it then cannot read back."""
    words = graph / "words.txt"
    if not words.exists():  # Vosk reads the word list from Gr.fst, which loses it here
        _run([[*FSTPRINT, f"--save_osymbols={words}", str(grammar)]], env)
    _run(
        [
            [*FSTPRINT, "--numeric", str(grammar)],
            ["fstcompile"],
            ["fstarcsort", "--sort_type=ilabel"],
            ["fstconvert", "--fst_type=const", "-", str(graph / "Gr.fst")],
        ],
        env,
    )


def _compose(source: Path, graph: Path, env: dict[str, str]) -> None:
    """HCLG.fst = HCLr.fst composed with the const Gr.fst (OpenFst's lookahead
    composition, as Vosk does it on the fly), the disambiguation transition ids
    (disambig_tid.int) made epsilons, as a const FST with aligned arrays, which
    graph_map.py memory-maps. Vosk loads an HCLG.fst in preference to HCLr and Gr."""
    pairs = graph / "disambig-to-epsilon.txt"
    ids = (source / "disambig_tid.int").read_text().split()
    pairs.write_text("".join(f"{tid} 0\n" for tid in ids))
    _run(
        [
            ["fstcompose", str(source / "HCLr.fst"), str(graph / "Gr.fst")],
            ["fstrelabel", f"--relabel_ipairs={pairs}"],
            ["fstconvert", "--fst_type=const", "--fst_align", "-", str(graph / "HCLG.fst")],
        ],
        env,
    )
    pairs.unlink()


def _run(stages: list[list[str]], env: dict[str, str]) -> None:
    """Run ``stages`` as a pipeline (no shell); GraphError naming each failed tool."""
    failures = []
    with contextlib.ExitStack() as stack:
        procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []
        upstream: IO[bytes] | None = None
        for i, argv in enumerate(stages):
            errors = stack.enter_context(tempfile.TemporaryFile())  # never blocks a stage
            last = i == len(stages) - 1
            proc = subprocess.Popen(  # noqa: S603 (fixed tool names, paths as separate args)
                argv,
                stdin=upstream,
                stdout=subprocess.DEVNULL if last else subprocess.PIPE,
                stderr=errors,
                env=env,
            )
            if upstream is not None:
                upstream.close()  # the next stage owns it now
            upstream = proc.stdout
            procs.append((argv[0], proc, errors))
        for tool, proc, said_to in procs:
            proc.wait()
            said_to.seek(0)
            said = said_to.read().decode(errors="replace")
            if proc.returncode != 0 or "ERROR" in said:
                failures.append(f"{tool} (exit {proc.returncode}): {said.strip()[:300]}")
    if failures:
        raise GraphError("converting the language-model graph failed: " + "; ".join(failures))
