"""Talking to a running ``coe serve``: the wire models (``wire``), the error table both ends read
(``errors``) and the HTTP ``Client`` (``client``). Imports neither FastAPI nor the server, nor
any engine: a client machine installs little and loads little.

    from orchestrator.remote import Client
    with Client("http://127.0.0.1:8000") as coe:
        print(coe.answer("Which planet is the largest?").text)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.lazy import lazy

if TYPE_CHECKING:
    from orchestrator.remote.client import Client

__getattr__, __dir__ = lazy(__name__, {"Client": "orchestrator.remote.client"})

__all__ = ["Client"]
