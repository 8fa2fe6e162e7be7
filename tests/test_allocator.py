"""The allocator setting the applications start with: applied on glibc, never over the user's choice."""
import pytest

from lplgrad import allocator


@pytest.mark.parametrize("env,chosen", [
    ({}, False),
    ({"LPLGRAD_MALLOC": "default"}, True),
    ({"LPLGRAD_MALLOC": "lplgrad"}, False),
    ({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}, True),
    ({"MALLOC_ARENA_MAX": "2"}, True),
])
def test_user_choice_is_respected(env, chosen):
    assert allocator.user_chose_allocator(env) is chosen


def test_apply_modes(monkeypatch):
    for k in [k for k in __import__("os").environ if k.startswith("MALLOC_") or k in ("LD_PRELOAD", "LPLGRAD_MALLOC")]:
        monkeypatch.delenv(k)
    assert allocator.apply("default") == "glibc default"
    described = allocator.apply("lplgrad")
    assert described.startswith("lplgrad (")
    monkeypatch.setenv("LPLGRAD_MALLOC", "default")
    assert allocator.keep_freed_memory() is False
    assert allocator.apply("lplgrad") == "lplgrad (not applied: the user's choice)"
    with pytest.raises(ValueError):
        allocator.apply("jemalloc")
