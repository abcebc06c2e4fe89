"""Strands: fan-out branches driven like asyncio Tasks without a Task each (runner/engine/strands.py).

Each behaviour a Task gives the code inside it is checked on both loops: order of results, the current task,
timeouts, nested TaskGroups, fail-fast, cancellation from outside, context variables, and no leaks.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import time
import weakref
from typing import Any

import pytest

from runner.engine.strands import CHUNK, Strand, StrandGroup, run_strands
from tests.conftest import LOOPS, run_on

pytestmark = [pytest.mark.timeout(20), pytest.mark.parametrize("loop", LOOPS)]


def test_results_in_index_order_across_chunks(loop: str) -> None:
    n = CHUNK * 3 + 7

    async def main() -> list[Any]:
        async def branch(i: int) -> int:
            await asyncio.sleep((n - i) * 0.00002)  # the last branch finishes first
            return i * 2

        return await run_strands("fan", range(n), branch)

    assert run_on(loop, main()) == [i * 2 for i in range(n)]


def test_no_items(loop: str) -> None:
    async def main() -> list[Any]:
        async def branch(i: int) -> int:
            raise AssertionError("never started")

        return await run_strands("fan", [], branch)

    assert run_on(loop, main()) == []


def test_current_task_is_the_strand_and_is_restored(loop: str) -> None:
    async def main() -> tuple[list[Any], Any, Any]:
        outer = asyncio.current_task()

        async def branch(i: int) -> Any:
            before = asyncio.current_task()
            await asyncio.sleep(0.001)
            after = asyncio.current_task()
            assert before is after
            return before

        seen = await run_strands("fan", range(3), branch)
        return seen, outer, asyncio.current_task()

    seen, outer, after = run_on(loop, main())
    assert all(isinstance(s, Strand) for s in seen)
    assert len({id(s) for s in seen}) == 3
    assert [s.get_name() for s in seen] == ["fan[0]", "fan[1]", "fan[2]"]
    assert after is outer and outer is not None


def test_timeout_inside_a_branch_is_that_branch_only(loop: str) -> None:
    async def main() -> list[Any]:
        async def branch(i: int) -> Any:
            if i == 1:
                try:
                    async with asyncio.timeout(0.02):
                        await asyncio.sleep(5)
                except TimeoutError:
                    task = asyncio.current_task()
                    assert task is not None
                    return ("timed out", task.cancelling())
            await asyncio.sleep(0.05)
            return "ok"

        return await run_strands("fan", range(3), branch)

    t0 = time.perf_counter()
    assert run_on(loop, main()) == ["ok", ("timed out", 0), "ok"]
    assert time.perf_counter() - t0 < 2


def test_an_uncaught_timeout_fails_the_group(loop: str) -> None:
    async def main() -> list[Any]:
        async def branch(i: int) -> Any:
            async with asyncio.timeout(0.01 if i == 0 else 10):
                await asyncio.sleep(5)

        return await run_strands("fan", range(2), branch)

    t0 = time.perf_counter()
    with pytest.raises(TimeoutError):
        run_on(loop, main())
    assert time.perf_counter() - t0 < 2


def test_nested_task_group_takes_the_strand_as_parent(loop: str) -> None:
    async def main() -> list[Any]:
        async def child(x: int) -> int:
            await asyncio.sleep(0.001)
            if x < 0:
                raise ValueError("negative")
            return x + 1

        async def branch(i: int) -> Any:
            try:
                async with asyncio.TaskGroup() as tg:
                    tasks = [tg.create_task(child(x)) for x in (i, i * 10, -1 if i == 2 else i)]
            except ExceptionGroup as group:
                return [type(e).__name__ for e in group.exceptions]
            return [t.result() for t in tasks]

        return await run_strands("fan", range(3), branch)

    assert run_on(loop, main()) == [[1, 1, 1], [2, 11, 2], ["ValueError"]]


def test_first_failure_cancels_the_others_at_once(loop: str) -> None:
    cleaned: list[int] = []

    async def main() -> None:
        async def branch(i: int) -> None:
            if i == 3:
                await asyncio.sleep(0.01)
                raise ValueError("branch 3 broke")
            try:
                await asyncio.sleep(10)
            finally:
                cleaned.append(i)

        await run_strands("fan", range(6), branch)

    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="branch 3 broke"):
        run_on(loop, main())
    assert time.perf_counter() - t0 < 2
    assert sorted(cleaned) == [0, 1, 2, 4, 5]


def test_after_an_early_failure_later_branches_never_start(loop: str) -> None:
    started: list[int] = []

    async def main() -> None:
        async def branch(i: int) -> None:
            started.append(i)
            if i == 5:
                raise RuntimeError("early")
            await asyncio.sleep(10)

        await run_strands("fan", range(CHUNK * 4), branch)

    with pytest.raises(RuntimeError, match="early"):
        run_on(loop, main())
    assert started == list(range(6))


def test_a_failing_start_fails_the_group(loop: str) -> None:
    cleaned: list[int] = []

    async def main() -> None:
        async def branch(i: int) -> None:
            try:
                await asyncio.sleep(10)
            finally:
                cleaned.append(i)

        def start(i: int) -> Any:
            if i == 2:
                raise KeyError("no such item")
            return branch(i)

        await StrandGroup("fan", 5, start).run()

    with pytest.raises(KeyError, match="no such item"):
        run_on(loop, main())
    assert sorted(cleaned) == [0, 1]


def test_cancelling_the_awaiting_task_cancels_and_awaits_every_strand(loop: str) -> None:
    log: list[str] = []

    async def main() -> str:
        async def branch(i: int) -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                log.append(f"cancelled {i}")
                raise
            finally:
                await asyncio.sleep(0)  # cleanup that awaits still runs to the end
                await asyncio.sleep(0.005)
                log.append(f"cleaned {i}")

        task = asyncio.get_running_loop().create_task(run_strands("fan", range(3), branch))
        await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.sleep(0.001)
        task.cancel()  # a second cancel while the group waits for its strands is absorbed
        try:
            await task
        except asyncio.CancelledError:
            return "cancelled"
        return "finished"

    t0 = time.perf_counter()
    assert run_on(loop, main()) == "cancelled"
    assert time.perf_counter() - t0 < 2
    assert sorted(log) == sorted([f"cancelled {i}" for i in range(3)] + [f"cleaned {i}" for i in range(3)])


def test_a_branch_that_swallows_cancellation_still_lets_the_group_end(loop: str) -> None:
    async def main() -> list[Any]:
        async def branch(i: int) -> str:
            if i == 0:
                await asyncio.sleep(0.005)
                raise ValueError("boom")
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                await asyncio.sleep(0.005)
                return "swallowed"
            return "slept"

        return await run_strands("fan", range(3), branch)

    with pytest.raises(ValueError, match="boom"):
        run_on(loop, main())


def test_bare_yields_interleave(loop: str) -> None:
    async def main() -> list[str]:
        order: list[str] = []

        async def branch(i: int) -> None:
            for step in range(3):
                order.append(f"{i}{step}")
                await asyncio.sleep(0)

        await run_strands("fan", range(2), branch)
        return order

    assert run_on(loop, main()) == ["00", "10", "01", "11", "02", "12"]


def test_each_strand_has_its_own_context(loop: str) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def main() -> tuple[list[Any], str]:
        var.set("caller")

        async def branch(i: int) -> tuple[str, str]:
            seen = var.get()
            var.set(f"branch {i}")
            await asyncio.sleep(0.001 * (3 - i))
            return seen, var.get()

        results = await run_strands("fan", range(3), branch)
        return results, var.get()

    results, after = run_on(loop, main())
    assert results == [("caller", f"branch {i}") for i in range(3)]
    assert after == "caller"


def test_branches_that_never_await(loop: str) -> None:
    async def main(fail: bool) -> list[Any]:
        async def branch(i: int) -> int:
            if fail and i == 1:
                raise LookupError("sync failure")
            return i

        return await run_strands("fan", range(4), branch)

    assert run_on(loop, main(False)) == [0, 1, 2, 3]
    with pytest.raises(LookupError, match="sync failure"):
        run_on(loop, main(True))


def test_the_task_protocol(loop: str) -> None:
    async def main() -> dict[str, Any]:
        holder: dict[str, Any] = {}
        called: list[Any] = []

        def on_done(strand: Any) -> None:
            called.append(strand)

        def removed(strand: Any) -> None:
            called.append("removed one ran")

        async def branch(i: int) -> int:
            me = asyncio.current_task()
            assert me is not None
            holder[f"strand{i}"] = me
            assert not me.done() and not me.cancelled()
            me.add_done_callback(on_done)
            me.add_done_callback(removed)
            assert me.remove_done_callback(removed) == 1
            with pytest.raises(asyncio.InvalidStateError):
                me.result()
            await asyncio.sleep(0.001)
            return i + 40

        holder["results"] = await run_strands("fan", range(2), branch)
        await asyncio.sleep(0.001)  # done callbacks are scheduled, like a Task's
        holder["called"] = called
        return holder

    out = run_on(loop, main())
    first = out["strand0"]
    assert out["results"] == [40, 41]
    assert first.done() and not first.cancelled()
    assert first.result() == 40 and first.exception() is None
    assert first.cancel() is False
    assert out["called"] == [out["strand0"], out["strand1"]]
    assert "finished" in repr(first)


def test_a_future_of_another_loop_is_an_error_not_a_hang(loop: str) -> None:
    other = asyncio.new_event_loop()
    try:
        foreign = other.create_future()

        async def main() -> None:
            async def branch(i: int) -> None:
                await foreign

            await run_strands("fan", range(1), branch)

        with pytest.raises(RuntimeError, match="different loop"):
            run_on(loop, main())
    finally:
        other.close()


@pytest.mark.parametrize("outcome", ["ok", "failed", "cancelled"])
def test_no_leaks(loop: str, outcome: str) -> None:
    refs: list[weakref.ref[Any]] = []

    async def main() -> int:
        async def branch(i: int) -> int:
            me = asyncio.current_task()
            refs.append(weakref.ref(me))
            if outcome == "failed" and i == 2:
                raise ValueError("x")
            await asyncio.sleep(0.001 if outcome != "cancelled" else 10)
            return i

        task = asyncio.get_running_loop().create_task(run_strands("fan", range(5), branch))
        if outcome == "cancelled":
            await asyncio.sleep(0.005)
            task.cancel()
        try:
            await task
        except (ValueError, asyncio.CancelledError):
            pass
        del task
        return len(asyncio.all_tasks())

    assert run_on(loop, main()) == 1  # only the main task
    gc.collect()
    assert refs and all(r() is None for r in refs)


def test_aiohttp_timeouts_cancel_only_their_branch(loop: str) -> None:
    aiohttp = pytest.importorskip("aiohttp")

    async def main() -> list[Any]:
        handlers: list[asyncio.StreamWriter] = []

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            handlers.append(writer)
            await reader.read(65536)  # reads the request, never answers

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.2)) as session:

                async def branch(i: int) -> str:
                    if i == 0:
                        try:
                            async with session.get(f"http://127.0.0.1:{port}/") as resp:
                                return f"status {resp.status}"
                        except TimeoutError:
                            return "timed out"
                    await asyncio.sleep(0.3)
                    return "ok"

                return await run_strands("fan", range(3), branch)
        finally:
            for writer in handlers:
                writer.close()
            server.close()
            await server.wait_closed()

    t0 = time.perf_counter()
    assert run_on(loop, main()) == ["timed out", "ok", "ok"]
    assert time.perf_counter() - t0 < 5


def test_a_failed_future_raises_in_the_branch_that_awaits_it(loop: str) -> None:
    async def main() -> list[Any]:
        loop_ = asyncio.get_running_loop()
        futures = [loop_.create_future() for _ in range(2)]

        async def branch(i: int) -> Any:
            try:
                return await futures[i]
            except ValueError as exc:
                return f"caught {exc}"

        loop_.call_later(0.01, futures[0].set_exception, ValueError("boom"))
        loop_.call_later(0.01, futures[1].set_result, "fine")
        return await run_strands("fan", range(2), branch)

    assert run_on(loop, main()) == ["caught boom", "fine"]


def test_a_cancel_after_its_future_failed_wins_and_the_failure_is_retrieved(loop: str) -> None:
    """The future failed, then the strand was cancelled before it resumed: CancelledError goes in (as with a
    Task), and the future's exception counts as retrieved, so asyncio will log no 'never retrieved' error."""

    async def main() -> tuple[list[str], bool]:
        loop_ = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop_.create_future()
        seen: list[str] = []

        async def branch(i: int) -> None:
            try:
                await future
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise

        group = asyncio.ensure_future(run_strands("fan", range(1), branch))
        await asyncio.sleep(0.01)
        strand = future._callbacks[0][0].__self__  # type: ignore[attr-defined]
        future.set_exception(ValueError("lost"))
        strand.cancel()  # before the strand's step runs
        with pytest.raises(asyncio.CancelledError):
            await group
        return seen, future._log_traceback  # type: ignore[attr-defined]

    seen, unretrieved = run_on(loop, main())
    assert seen == ["cancelled"]
    assert unretrieved is False
