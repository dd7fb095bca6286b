"""Fixtures shared by the test modules.

* ``one_thread``: one intra-op torch thread for a whole module (two OpenMP threads spin badly on the shared 2-core
  machine when the suite runs with ``-n 2``); a module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
* :func:`shared_session_build`: build something expensive (a dataset, a trained bundle) once per test session, also
  under pytest-xdist, where the workers share one build through a file lock in the session's common temporary folder.
* ``trained_bundle``: ``trained_bundle(name)`` is the bundle ``bundles/<name>`` trained at tiny size
  (``_bundle_helpers.BUNDLE_BUILDS``), built on first use and then shared by every test of the session, also across
  xdist workers (:func:`shared_session_build`): the conformance test and each bundle's own tests use the same one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def shared_session_build(
    tmp_path_factory: pytest.TempPathFactory, worker_id: str, name: str, build: Callable[[Path], Any]
) -> tuple[Path, Any]:
    """``(folder, result)`` of ``build(folder)``, run once per session.

    Without xdist (``worker_id == "master"``) the folder is a fresh temporary one. Under xdist the workers share
    ``<basetemp parent>/<name>_shared/build``: the first one to take the lock builds and records the (JSON) result in
    ``done.json``, the others read it. With pytest 9.2 / xdist 3.8 the ``xdist_group`` mark does not keep a module's
    tests on one worker, so a per-worker fixture would build everything twice.
    """
    if worker_id == "master":
        folder = tmp_path_factory.mktemp(name)
        return folder, build(folder)
    from filelock import FileLock  # only under xdist

    shared = tmp_path_factory.getbasetemp().parent / f"{name}_shared"
    shared.mkdir(exist_ok=True)
    folder, done = shared / "build", shared / "done.json"
    with FileLock(str(shared / "build.lock")):
        if done.is_file():
            return folder, json.loads(done.read_text(encoding="utf-8"))
        folder.mkdir(exist_ok=True)
        result = build(folder)
        done.write_text(json.dumps(result))
    return folder, result


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory, worker_id):
    """``trained_bundle(name)`` -> ``_bundle_helpers.TrainedBundle``, each bundle built once per session."""
    from _bundle_helpers import BUNDLE_BUILDS, trained_bundle_from

    built: dict[str, Any] = {}

    def get(name: str):
        if name not in built:
            folder, result = shared_session_build(tmp_path_factory, worker_id, f"{name}_bundle", BUNDLE_BUILDS[name])
            built[name] = trained_bundle_from(name, folder, result)
        return built[name]

    return get
