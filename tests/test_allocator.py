"""The allocator setting the applications start with: applied on glibc, never over the user's choice."""

import pytest

from benchmarks.common import malloc_setting
from lplgrad import allocator


@pytest.mark.parametrize(
    "env,chosen",
    [
        ({}, False),
        ({"LPLGRAD_MALLOC": "default"}, True),
        ({"LPLGRAD_MALLOC": "lplgrad"}, False),
        ({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}, True),
        ({"MALLOC_ARENA_MAX": "2"}, True),
    ],
)
def test_user_choice_is_respected(env, chosen):
    assert allocator.user_chose_allocator(env) is chosen


def test_the_benchmarks_malloc_setting(monkeypatch):
    for k in [k for k in __import__("os").environ if k.startswith("MALLOC_") or k in ("LD_PRELOAD", "LPLGRAD_MALLOC")]:
        monkeypatch.delenv(k)
    assert malloc_setting("default") == "glibc default"
    described = malloc_setting("lplgrad")
    assert described.startswith("lplgrad (")
    monkeypatch.setenv("LPLGRAD_MALLOC", "default")
    assert allocator.keep_freed_memory() is False
    assert malloc_setting("lplgrad") == "lplgrad (not applied: the user's choice)"
    with pytest.raises(ValueError):
        malloc_setting("jemalloc")
