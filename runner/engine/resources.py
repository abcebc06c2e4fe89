"""What a run opens besides model clients: embedders (behind their file caches) and long-term stores.

Opened lazily by the session for the memories agents actually use; closed on every exit path, with the
stores flushed first so background records land on disk before the loop ends.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.events import Recorder
from runner.plan.compile import Plan, walk_plans


@dataclass
class RunResources:
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


def open_resources(plan: Plan, run_dir: Path) -> RunResources:
    """Embedders and stores for the long-term memories used by the agents that run."""
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
            embedder = CachedEmbedder.from_config(_inner_embedder(spec), spec.config.cache, base=base)
            resources.embedders[config.embedding] = embedder
        store_path = Path(config.store)
        resources.stores[name] = VectorStore(store_path if store_path.is_absolute() else base / store_path, embedder)
    return resources


def _inner_embedder(spec: Any) -> Any:
    if spec.provider == "hashing":
        from runner.embeddings.hashing import HashingEmbedder  # noqa: PLC0415

        return HashingEmbedder(spec.config.dimensions)
    from runner.providers.openai import OpenAIEmbedder  # noqa: PLC0415

    return OpenAIEmbedder(spec.name, spec.openai)
