"""Task names -> task objects (the only place that dispatches on a task name)."""

from __future__ import annotations

from collections.abc import Callable

from favor.tasks.common import Task
from favor.tasks.contacts import ContactTask
from favor.tasks.function import GoTask, ec_task, localization_task
from favor.tasks.interactions import InterchainTask
from favor.tasks.secondary_structure import SS3_STATES, SS8_STATES, SecondaryStructureTask

__all__ = ["TASK_NAMES", "get_task"]

_FACTORIES: dict[str, Callable[[], Task]] = {
    "ec": ec_task,
    "localization": localization_task,
    "go_mf": GoTask,
    "ss3": lambda: SecondaryStructureTask(states=SS3_STATES),
    "ss8": lambda: SecondaryStructureTask(states=SS8_STATES),
    "contacts": ContactTask,
    "interchain": InterchainTask,
}
TASK_NAMES = tuple(_FACTORIES)


def get_task(name: str) -> Task:
    """A fresh task object for ``name`` (one of `TASK_NAMES`)."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASK_NAMES)}")
    return _FACTORIES[name]()
