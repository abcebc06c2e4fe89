"""Joining Ray for a dataset batch (issue 18): the install check, the cluster to join or start (a cluster of this
machine alone listens on 127.0.0.1 only), leaving it, and the keys the workers are given. Kept apart from the
driver (:mod:`runner.dataset.onray.driver`) so that the CLI's checks before a batch import no more than this."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from typing import Any

from runner.errors import RunnerError
from runner.plan.compile import Plan

INSTALL = "pip install 'runner[ray]'"
NAMESPACE = "runner"


def import_ray(address: str | None = None) -> Any:
    """Ray, or the error saying how to install it (exit 1). Without an ``address`` (nor ``$RAY_ADDRESS``) the run
    starts a cluster of this machine alone, whose servers must listen on 127.0.0.1, not every interface: Ray
    takes the machine's address otherwise (which only a multi-node cluster needs), and reads which when it is
    first imported, so this is said before."""
    if not (address or os.environ.get("RAY_ADDRESS")):
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray  # noqa: PLC0415
    except ImportError:
        raise RunnerError(f"--executor ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


def connect(address: str | None, workers: int | None, folder: str, excludes: Iterable[str] = ()) -> bool:
    """Join the Ray cluster at ``address`` (else ``$RAY_ADDRESS``, else start one on this machine, listening on
    the loopback interface only, with ``workers`` CPUs if given), with the workflow's ``folder`` (less
    ``excludes``) as the workers' working directory (Ray uploads a local folder only for a whole job). True if
    Ray was started or joined here (and is to be left when the batch ends); False if this process was already
    connected (a library caller's Ray, whose job's runtime environment the workers then have)."""
    target = address or os.environ.get("RAY_ADDRESS") or None
    ray = import_ray(address)
    if ray.is_initialized():
        return False
    named = f"--ray-address {address}" if address else f"RAY_ADDRESS={target}"
    if target is not None and target != "auto":
        _reachable(target, named)
    import logging  # noqa: PLC0415

    common: dict[str, Any] = {
        "log_to_driver": False,
        "logging_level": logging.WARNING,
        "namespace": NAMESPACE,
        "runtime_env": {"working_dir": folder, "excludes": list(excludes)},
    }
    try:
        if target is None:
            ray.init(num_cpus=workers, include_dashboard=False, **common)
        else:
            ray.init(address=target, **common)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError, ray.exceptions.RayError) as exc:
        where = named if target is not None else "a local Ray instance"
        raise RunnerError(f"{where}: could not connect to the Ray cluster: {exc}") from None
    return True


def _reachable(target: str, named: str) -> None:
    """Fail at once, naming the address, when nothing listens there (Ray itself retries for a minute)."""
    hostport = target.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise RunnerError(f"{named}: expected HOST:PORT (the head node's GCS address, such as 10.0.0.5:6379) or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise RunnerError(
            f"{named}: cannot reach a Ray cluster there ({reason}); start one with `ray start --head` on that "
            "machine, or leave out --ray-address to run on a Ray instance started on this one"
        ) from None


def leave(started: bool) -> None:
    """Leave the cluster joined by :func:`connect` (stopping the instance if it was started here)."""
    if started:
        import_ray().shutdown()


def secrets_of(plan: Plan) -> dict[str, str]:
    """The values of the environment variables the workflow's models and embedders name in ``api_key_env``."""
    wf = plan.workflow
    records = [spec.config for spec in wf.models.values()]
    records += [r for spec in wf.embeddings.values() for r in (spec.config, spec.settings)]
    names = {name for record in records if isinstance(name := getattr(record, "api_key_env", None), str)}
    return {name: os.environ[name] for name in sorted(names) if name in os.environ}
