"""What a run opens besides model clients: embedders (behind their file caches) and long-term stores.

Opened lazily by the session for the memories agents actually use; closed on every exit path, with the
stores flushed first so background records land on disk before the loop ends.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.embeddings import EMBEDDERS
from runner.events import Recorder
from runner.plan.compile import Plan, walk_plans

if TYPE_CHECKING:
    import httpx


@dataclass
class RunResources:
    """What a run opens once and shares between its stages: embedders and vector stores, under the run's folder."""

    run_dir: Path
    embedders: dict[str, Any] = field(default_factory=dict)  # name -> CachedEmbedder
    stores: dict[str, Any] = field(default_factory=dict)  # memory name -> VectorStore

    async def aclose(self, recorder: Recorder | None = None) -> None:
        """Flush the stores, close the embedders, and record each embedder's cache figures."""
        errors: list[BaseException] = []
        for store in self.stores.values():
            try:
                await store.flush()
            except Exception as exc:  # noqa: BLE001 - reported after everything is closed
                errors.append(exc)
        results = await asyncio.gather(*(e.aclose() for e in self.embedders.values()), return_exceptions=True)
        errors.extend(r for r in results if isinstance(r, BaseException))
        if recorder is not None:
            for name, embedder in self.embedders.items():
                recorder.emit("cache_stats", name, embedder.stats().as_dict())
        if errors:
            raise errors[0]


def open_resources(plan: Plan, run_dir: Path, *, transport: httpx.AsyncBaseTransport | None = None) -> RunResources:
    """Embedders and stores for the long-term memories used by the agents that run. HTTP embedders send
    through ``transport`` when one is given (a program's tests pass ``httpx.MockTransport``)."""
    wf = plan.workflow
    resources = RunResources(run_dir)
    used = {m for sp in walk_plans(plan.stages) if sp.agent is not None and (m := sp.agent.spec.memory)}
    long_term = {name: lt for name in sorted(used) if (lt := wf.memory[name].long_term) is not None}
    if not long_term:
        return resources
    from runner.embeddings.cache import CachedEmbedder  # noqa: PLC0415 - numpy only when memory is used
    from runner.embeddings.store import VectorStore  # noqa: PLC0415

    base = Path(wf.file).resolve().parent
    for name, config in long_term.items():
        embedder = resources.embedders.get(config.embedding)
        if embedder is None:
            spec = wf.embeddings[config.embedding]
            inner = EMBEDDERS[spec.provider].open(spec.name, spec.config, spec.settings, transport=transport)
            embedder = CachedEmbedder.from_config(inner, spec.config.cache, base=base)
            resources.embedders[config.embedding] = embedder
        store_path = Path(config.store)
        resources.stores[name] = VectorStore(store_path if store_path.is_absolute() else base / store_path, embedder)
    return resources
