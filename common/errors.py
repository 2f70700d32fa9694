"""The project's one error tree.

    CoeError                      every error this project raises on purpose
    ├── BadInput                  a caller gave something unusable (empty, too long, wrong type)
    ├── ConfigError               a settings or pool file is malformed (names file and field)
    ├── NotFound                  a named thing does not exist (expert, policy, data file)
    │   └── ReplayMiss            no recorded answer for (model, question id)
    └── EngineError               a model engine failed
        ├── EngineLoadError       the model could not be loaded or converted
        ├── EndpointError         an HTTP endpoint is dead, wrong, or answered badly
        ├── EngineTimeout         a generation took longer than allowed
        └── GenerationFailed      a request failed after its retries

Outside errors (httpx, vLLM, sqlite, pydantic, OS) are converted at the boundary with
``raise ... from exc``. Every message is one line that names what is wrong.
"""

from __future__ import annotations


class CoeError(Exception):
    """Base of every error raised on purpose by symbolic-coe."""

    def __str__(self) -> str:  # keep every message to one line
        return " ".join(str(self.args[0] if self.args else "").split())


class BadInput(CoeError, ValueError):
    """The caller's input cannot be used as given."""


class ConfigError(CoeError, ValueError):
    """A settings object or a pool file is malformed."""


class NotFound(CoeError, LookupError):
    """A named expert, policy, file or record does not exist."""


class ReplayMiss(NotFound):
    """The replay recordings hold no answer for this model and question."""


class EngineError(CoeError, RuntimeError):
    """A model engine failed to load or to generate."""


class EngineLoadError(EngineError):
    """A model could not be prepared or loaded."""


class EndpointError(EngineError):
    """An HTTP endpoint could not be reached or answered with an error."""


class EngineTimeout(EngineError, TimeoutError):
    """A generation exceeded its time limit."""


class GenerationFailed(EngineError):
    """A request still failed after its retries."""
