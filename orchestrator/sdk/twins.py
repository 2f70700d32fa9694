"""The SDK's async twins: each public call of ``Orchestrator`` run in a worker thread, for async
code (calls on one ``Orchestrator`` still run one at a time, since they share its engines)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from common.query import Query
from common.vocabulary import Aggregation
from common.vocabulary import ScorerKind as Scorer
from eval.benchmarks import Benchmark
from orchestrator.pipeline.trace import Answer

__all__ = ["AsyncTwins"]


class AsyncTwins:
    """``aanswer``, ``aanswer_batch`` and ``achat`` over the host's ``answer``, ``answer_batch`` and ``chat``."""

    def answer(
        self,
        question: str | Query,
        *,
        options: Sequence[str] | None = None,
        policy: str | None = None,
        k: int | None = None,
        scorer: Scorer = "classifier",
        aggregation: Aggregation = "synthesis",
        max_tokens: int | None = None,
        skip_consensus: bool | None = None,
    ) -> Answer:
        raise NotImplementedError

    def chat(
        self,
        messages: Sequence[Mapping[str, object]],
        *,
        session: str | None = None,
        policy: str | None = None,
        k: int | None = None,
        scorer: Scorer = "classifier",
        aggregation: Aggregation = "synthesis",
        max_tokens: int | None = None,
        skip_consensus: bool | None = None,
    ) -> Answer:
        raise NotImplementedError

    def answer_batch(
        self,
        questions: Sequence[str | Query],
        *,
        benchmark: Benchmark | None = None,
        policy: str | None = None,
        k: int | None = None,
        scorer: Scorer = "classifier",
        aggregation: Aggregation = "synthesis",
        max_tokens: int | None = None,
        skip_consensus: bool | None = None,
        run_id: str | None = None,
        logprobs: bool = False,
    ) -> list[Answer]:
        raise NotImplementedError

    async def aanswer(
        self,
        question: str | Query,
        *,
        options: Sequence[str] | None = None,
        policy: str | None = None,
        k: int | None = None,
        scorer: Scorer = "classifier",
        aggregation: Aggregation = "synthesis",
        max_tokens: int | None = None,
        skip_consensus: bool | None = None,
    ) -> Answer:
        """``answer`` in a worker thread, for async code."""
        return await asyncio.to_thread(
            self.answer,
            question,
            options=options,
            policy=policy,
            k=k,
            scorer=scorer,
            aggregation=aggregation,
            max_tokens=max_tokens,
            skip_consensus=skip_consensus,
        )

    async def aanswer_batch(
        self,
        questions: Sequence[str | Query],
        *,
        benchmark: Benchmark | None = None,
        policy: str | None = None,
        k: int | None = None,
        scorer: Scorer = "classifier",
        aggregation: Aggregation = "synthesis",
        max_tokens: int | None = None,
        skip_consensus: bool | None = None,
        run_id: str | None = None,
        logprobs: bool = False,
    ) -> list[Answer]:
        """``answer_batch`` in a worker thread, for async code."""
        return await asyncio.to_thread(
            self.answer_batch,
            questions,
            benchmark=benchmark,
            policy=policy,
            k=k,
            scorer=scorer,
            aggregation=aggregation,
            max_tokens=max_tokens,
            skip_consensus=skip_consensus,
            run_id=run_id,
            logprobs=logprobs,
        )

    async def achat(
        self,
        messages: Sequence[Mapping[str, object]],
        *,
        session: str | None = None,
        policy: str | None = None,
        k: int | None = None,
        scorer: Scorer = "classifier",
        aggregation: Aggregation = "synthesis",
        max_tokens: int | None = None,
        skip_consensus: bool | None = None,
    ) -> Answer:
        """``chat`` in a worker thread, for async code."""
        return await asyncio.to_thread(
            self.chat,
            messages,
            session=session,
            policy=policy,
            k=k,
            scorer=scorer,
            aggregation=aggregation,
            max_tokens=max_tokens,
            skip_consensus=skip_consensus,
        )
