"""What the service shows a client of its own machine: nothing. ``Redactor`` takes the server's
paths, hosts and ports out of any text bound for a client (error messages, a job's error, the
reasons in a trace, ``/readyz``): each place the service knows by a name (``<data folder>``,
``<the store>``, ``<the recordings of smollm2>``, ``<a benchmark's folder>``...), anything else that looks
like an absolute path, a URL or an IP address by a placeholder. The text in full goes to the log.

The library's messages keep their paths (a person at the CLI needs them); the service is the one
door that faces clients it does not trust, so it redacts at that door, in one place.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from batching.spec import HTTPSource, ReplaySource, VLLMSource
from orchestrator.stores.jobs import JobResults
from orchestrator.trace import Answer

log = logging.getLogger(__name__)

_END = r"(?=$|[/\s'\"`:.,;)\]}>])"
"""Where a known place ends: its text is not the start of a longer name."""
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"`<>]*[^\s'\"`<>.,:;)]")
_IP = re.compile(r"(?<![\w.])(?:\d{1,3}(?:\.\d{1,3}){3}|localhost|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?(?!\w|\.\d)")
_PATH = re.compile(r"(?<![\w.:/~<>-])~?/(?!v1/)[\w.~+@%=,-]+(?:/[\w.~+@%=,-]*)*")

SERVER_PATH = "<a server path>"
ADDRESS = "<an address>"


class Redactor:
    """Replaces ``places`` (text -> its name) and what looks like a path or an address."""

    def __init__(self, places: Mapping[str, str]) -> None:
        known = sorted(((text, name) for text, name in places.items() if len(text) > 1), key=lambda p: -len(p[0]))
        self._places = [(re.compile(re.escape(text) + _END), name) for text, name in known]

    def __call__(self, text: str) -> str:
        for pattern, name in self._places:
            text = pattern.sub(name, text)
        text = _URL.sub(ADDRESS, text)
        text = _IP.sub(ADDRESS, text)
        return _PATH.sub(SERVER_PATH, text)

    def shown(self, text: str | None, what: str = "message") -> str | None:
        """``text`` as a client may see it; the log keeps the original when they differ."""
        if text is None:
            return None
        public = self(text)
        if public != text:
            log.info("%s shown without server details: %s", what, text)
        return public

    def answer(self, answer: Answer) -> Answer:
        """``answer`` with its error and its experts' errors redacted (its texts are the models')."""
        experts = answer.trace.experts
        if answer.error is None and all(e.error is None for e in experts):
            return answer
        shown = tuple(e if e.error is None else e.model_copy(update={"error": self.shown(e.error)}) for e in experts)
        trace = answer.trace.model_copy(update={"experts": shown})
        return answer.model_copy(update={"error": self.shown(answer.error), "trace": trace})

    def results(self, results: JobResults) -> JobResults:
        """A job's result rows with their experts' errors redacted."""
        rows = []
        for row in results.results:
            if all(e.error is None for e in row.experts):
                rows.append(row)
                continue
            experts = [e if e.error is None else e.model_copy(update={"error": self(e.error)}) for e in row.experts]
            rows.append(row.model_copy(update={"experts": tuple(experts)}))
        return results.model_copy(update={"results": rows})


def path_names(named: Iterable[tuple[Path | str, str]]) -> dict[str, str]:
    """Each path (as given, expanded and resolved) -> ``<what it is>``."""
    out: dict[str, str] = {}
    for path, what in named:
        given = Path(path)
        for form in {str(given), str(given.expanduser()), str(given.expanduser().resolve())}:
            out.setdefault(form, f"<{what}>")
    return out


def url_names(url: str, what: str) -> dict[str, str]:
    """A URL (and its form without a password) -> ``<what it is>``; its host:port -> ``<the
    address of what it is>``."""
    from orchestrator.stores.target import redacted

    parts = urlsplit(url)
    out = {url: f"<{what}>", redacted(url): f"<{what}>"}
    if parts.hostname and parts.port is not None:
        out[f"{parts.hostname}:{parts.port}"] = f"<the address of {what}>"
    return out


def source_names(experts: str, source: object) -> dict[str, str]:
    """Where the model of ``experts`` (a name, or words for several) lives -> a name for it."""
    if isinstance(source, ReplaySource):
        return path_names([(source.path, f"the recordings of {experts}")])
    if isinstance(source, HTTPSource):
        return url_names(source.base_url, f"the endpoint of {experts}")
    if isinstance(source, VLLMSource) and source.model.startswith(("/", ".", "~")):
        return path_names([(source.model, f"the model folder of {experts}")])
    return {}


__all__ = ["ADDRESS", "SERVER_PATH", "Redactor", "path_names", "source_names", "url_names"]
