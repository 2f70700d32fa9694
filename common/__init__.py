"""Pieces every package shares: the error tree and a few plain helpers."""

from common.errors import (
    BadInput,
    CoeError,
    ConfigError,
    EngineError,
    EngineLoadError,
    EngineTimeout,
    EndpointError,
    GenerationFailed,
    NotFound,
    ReplayMiss,
)

__all__ = [
    "BadInput",
    "CoeError",
    "ConfigError",
    "EngineError",
    "EngineLoadError",
    "EngineTimeout",
    "EndpointError",
    "GenerationFailed",
    "NotFound",
    "ReplayMiss",
]
