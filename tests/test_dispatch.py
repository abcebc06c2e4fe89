"""The fan-out dispatcher (runner/dispatch.py): branches as tasks of one asyncio.TaskGroup, bounded.

Checked on both loops, and with eager tasks where Python has them (3.12+), as the engine's own loop runs:
results in order, each branch a real Task with its own context, the bound held, fail-fast cancelling the
running branches and starting nothing more, a failing start, cancellation from outside, no leaks. Every
wait is on an event the test sets, not on a clock.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import sys
import weakref
from collections.abc import Coroutine
from typing import Any

import pytest

from runner.dispatch import CHUNK, first_error, run_all
from runner.engine.loop import eager_factory
from tests.conftest import LOOPS

# Eager tasks exist from Python 3.12 on; the engine's own loop starts tasks eagerly there (runner.engine.loop).
MODES = [(loop, eager) for loop in LOOPS for eager in ((False, True) if sys.version_info >= (3, 12) else (False,))]
pytestmark = [pytest.mark.timeout(20)]


def run_in(mode: tuple[str, bool], coro: Coroutine[Any, Any, Any]) -> Any:
    loop_name, eager = mode
    factory = None
    if loop_name == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        if eager:
            factory = eager_factory(runner.get_loop())
            if factory is None:
                coro.close()
                pytest.skip("no eager tasks on uvloop with this Python")
            runner.get_loop().set_task_factory(factory)
        return runner.run(coro)


@pytest.fixture(params=MODES, ids=[f"{loop}-{'eager' if eager else 'lazy'}" for loop, eager in MODES])
def mode(request: pytest.FixtureRequest) -> tuple[str, bool]:
    return request.param  # type: ignore[no-any-return]


@pytest.mark.parametrize("limit", [None, 1, 3, 1000])
def test_results_in_index_order(mode: tuple[str, bool], limit: int | None) -> None:
    n = 50

    async def main() -> list[int]:
        gates = [asyncio.Event() for _ in range(n)]

        async def branch(i: int) -> int:
            if limit is None or limit >= n:
                # everything runs at once: release in reverse so the last branch ends first
                if i < n - 1:
                    await gates[i].wait()
                if i > 0:
                    gates[i - 1].set()
            else:
                await asyncio.sleep(0)
            return i * 2

        return await run_all(n, branch, limit=limit)

    assert run_in(mode, main()) == [i * 2 for i in range(n)]


def test_no_branches(mode: tuple[str, bool]) -> None:
    def start(i: int) -> Any:
        raise AssertionError("never started")

    assert run_in(mode, run_all(0, start)) == []


@pytest.mark.parametrize("limit", [None, 2])
def test_every_branch_is_a_real_task_with_its_own_context(mode: tuple[str, bool], limit: int | None) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def main() -> tuple[list[Any], str, Any]:
        var.set("caller")
        outer = asyncio.current_task()
        release = asyncio.Event()
        arrived = 0

        async def branch(i: int) -> tuple[bool, str, str]:
            nonlocal arrived
            me = asyncio.current_task()
            seen = var.get()
            var.set(f"branch {i}")
            arrived += 1
            if arrived == (3 if limit is None else limit):
                release.set()
            if i < 2:
                await release.wait()  # the branches running together have all set their value
            await asyncio.sleep(0)
            return isinstance(me, asyncio.Task) and me is not outer, seen, var.get()

        results = await run_all(3, branch, limit=limit)
        return results, var.get(), asyncio.current_task() is outer

    results, after, same = run_in(mode, main())
    assert results == [(True, "caller", f"branch {i}") for i in range(3)]
    assert after == "caller" and same


@pytest.mark.parametrize("limit", [1, 2, 5])
def test_the_bound_holds_and_every_slot_is_reused(mode: tuple[str, bool], limit: int) -> None:
    async def main() -> tuple[int, list[int]]:
        running = peak = 0
        order: list[int] = []

        async def branch(i: int) -> int:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            order.append(i)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            running -= 1
            return i

        await run_all(20, branch, limit=limit)
        return peak, order

    peak, order = run_in(mode, main())
    assert peak == limit
    assert order == list(range(20))  # started in index order


def test_a_long_chain_of_branches_that_end_at_once_does_not_grow_the_stack(mode: tuple[str, bool]) -> None:
    async def main() -> int:
        async def branch(i: int) -> int:
            return i  # never waits: an eager task ends within create_task

        return len(await run_all(sys.getrecursionlimit() * 3, branch, limit=1))

    assert run_in(mode, main()) == sys.getrecursionlimit() * 3


@pytest.mark.parametrize("limit", [None, 4])
def test_first_failure_cancels_the_running_branches_and_is_raised_as_itself(
    mode: tuple[str, bool], limit: int | None
) -> None:
    cleaned: list[int] = []

    async def main() -> None:
        waiting = 0
        all_waiting = asyncio.Event()

        async def branch(i: int) -> None:
            nonlocal waiting
            if i == 3:
                await all_waiting.wait()
                raise ValueError("branch 3 broke")
            try:
                waiting += 1
                if waiting == 3:
                    all_waiting.set()
                await asyncio.Event().wait()  # forever, unless cancelled
            finally:
                cleaned.append(i)

        await run_all(6, branch, limit=limit)

    with pytest.raises(ValueError, match="branch 3 broke") as caught:
        run_in(mode, main())
    assert not isinstance(caught.value, BaseExceptionGroup)
    # unbounded: 0, 1, 2, 4 and 5 were all waiting; bounded by 4, or with eager tasks (3 fails within its
    # create_task, as 2 has set the event already): 0, 1 and 2 were, 4 and 5 never started
    assert sorted(cleaned) == ([0, 1, 2, 4, 5] if limit is None and not mode[1] else [0, 1, 2])


@pytest.mark.parametrize("limit", [None, 1, 3])
def test_after_a_failure_nothing_more_starts(mode: tuple[str, bool], limit: int | None) -> None:
    started: list[int] = []

    async def main() -> None:
        async def branch(i: int) -> None:
            started.append(i)
            if i == 2:
                raise RuntimeError("early")
            if limit is not None:
                await asyncio.sleep(0)  # bounded: the failure comes while 0 and 1 still run (or are done)
                return
            await asyncio.Event().wait()

        await run_all(1000, branch, limit=limit)

    with pytest.raises(RuntimeError, match="early"):
        run_in(mode, main())
    if limit is None and not mode[1]:
        # lazy tasks (Python 3.11): the first chunk's first steps were queued together; no later chunk starts
        assert started == list(range(CHUNK))
    elif limit is None:
        assert started == [0, 1, 2]
    else:
        assert started[: started.index(2) + 1] == list(range(started.index(2) + 1))
        assert len(started) <= 2 + (limit or 1)


@pytest.mark.parametrize("limit", [None, 2])
def test_a_failing_start_fails_the_fanout(mode: tuple[str, bool], limit: int | None) -> None:
    cleaned: list[int] = []
    called: list[int] = []

    async def main() -> None:
        async def branch(i: int) -> None:
            try:
                await asyncio.Event().wait()
            finally:
                cleaned.append(i)

        def start(i: int) -> Any:
            called.append(i)
            if i == 2:
                raise KeyError("no such item")
            return branch(i)

        if limit is None:
            await run_all(5, start)
        else:
            # with a bound of 2, branch 2 is prepared only when a slot frees: end branch 0 to free one
            async def first(i: int) -> None:
                if i == 0:
                    return
                await branch(i)

            def start_bounded(i: int) -> Any:
                called.append(i)
                if i == 2:
                    raise KeyError("no such item")
                return first(i)

            await run_all(5, start_bounded, limit=limit)

    with pytest.raises(KeyError, match="no such item"):
        run_in(mode, main())
    assert called == [0, 1, 2]
    if limit is None:
        # eager tasks had started 0 and 1, which are cancelled; lazy ones are cancelled before their first step
        assert sorted(cleaned) == ([0, 1] if mode[1] else [])
    else:
        assert cleaned == [1]


@pytest.mark.parametrize("limit", [None, 2])
def test_cancelling_the_caller_cancels_and_awaits_every_branch(mode: tuple[str, bool], limit: int | None) -> None:
    log: list[str] = []

    async def main() -> str:
        waiting = 0
        all_waiting = asyncio.Event()
        expected = 3 if limit is None else limit

        async def branch(i: int) -> None:
            nonlocal waiting
            try:
                waiting += 1
                if waiting == expected:
                    all_waiting.set()
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                log.append(f"cancelled {i}")
                raise
            finally:
                await asyncio.sleep(0)  # cleanup that awaits still runs to the end
                log.append(f"cleaned {i}")

        task = asyncio.get_running_loop().create_task(run_all(3, branch, limit=limit))
        await all_waiting.wait()
        task.cancel()
        await asyncio.sleep(0)
        task.cancel()  # a second cancel while the group waits for its branches
        try:
            await task
        except asyncio.CancelledError:
            return "cancelled"
        return "finished"

    assert run_in(mode, main()) == "cancelled"
    ran = range(3) if limit is None else range(limit)
    assert sorted(log) == sorted([f"cancelled {i}" for i in ran] + [f"cleaned {i}" for i in ran])


def test_timeouts_inside_a_branch_are_that_branch_only(mode: tuple[str, bool]) -> None:
    async def main() -> list[Any]:
        timed_out = asyncio.Event()

        async def branch(i: int) -> Any:
            if i == 1:
                try:
                    async with asyncio.timeout(0):
                        await asyncio.Event().wait()
                except TimeoutError:
                    task = asyncio.current_task()
                    assert task is not None
                    timed_out.set()
                    return ("timed out", task.cancelling())
            await timed_out.wait()
            return "ok"

        return await run_all(3, branch)

    assert run_in(mode, main()) == ["ok", ("timed out", 0), "ok"]


def test_nested_task_groups_inside_a_branch(mode: tuple[str, bool]) -> None:
    async def main() -> list[Any]:
        async def child(x: int) -> int:
            await asyncio.sleep(0)
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

        return await run_all(3, branch)

    assert run_in(mode, main()) == [[1, 1, 1], [2, 11, 2], ["ValueError"]]


@pytest.mark.parametrize("outcome", ["ok", "failed", "cancelled"])
def test_no_leaks(mode: tuple[str, bool], outcome: str) -> None:
    refs: list[weakref.ref[Any]] = []

    async def main() -> int:
        waiting = 0
        all_waiting = asyncio.Event()

        async def branch(i: int) -> int:
            nonlocal waiting
            me = asyncio.current_task()
            assert me is not None
            refs.append(weakref.ref(me))
            if outcome == "failed" and i == 2:
                raise ValueError("x")
            waiting += 1
            if waiting == 4:
                all_waiting.set()
            if outcome == "cancelled":
                await asyncio.Event().wait()
            await asyncio.sleep(0)
            return i

        task = asyncio.get_running_loop().create_task(run_all(5, branch))
        if outcome == "cancelled":
            await all_waiting.wait()
            task.cancel()
        try:
            await task
        except (ValueError, asyncio.CancelledError):
            pass
        del task
        return len(asyncio.all_tasks())

    assert run_in(mode, main()) == 1  # only the main task
    gc.collect()
    assert refs and all(r() is None for r in refs)


def test_first_error_unwraps_nested_groups() -> None:
    inner = ValueError("first")
    group = BaseExceptionGroup("outer", [ExceptionGroup("inner", [inner, KeyError("second")]), TypeError("third")])
    assert first_error(group) is inner
    plain = RuntimeError("plain")
    assert first_error(plain) is plain
