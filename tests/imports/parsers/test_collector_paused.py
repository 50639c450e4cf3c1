"""`collector_paused`: the cyclic collector off inside the block and back on after; what
the block built and keeps goes straight to the oldest generation (the young collections
that follow would walk all of it for nothing), unless someone froze objects on purpose."""

import gc

from assets.imports.parsers.base import collector_paused


class Node:
    def __init__(self):
        self.children: list = []


def _in_generation(objects: list, generation: int) -> int:
    ids = {id(o) for o in gc.get_objects(generation)}
    return sum(id(o) in ids for o in objects)


def test_what_the_block_keeps_lands_in_the_oldest_generation():
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        kept = [Node() for _ in range(5_000)]
    assert gc.isenabled()
    assert _in_generation(kept, 0) == 0
    assert _in_generation(kept, 2) == len(kept)
    garbage = [Node() for _ in range(3)]
    for node in garbage:
        node.children.append(node)  # a cycle: only the collector frees it
    del garbage
    assert gc.collect() >= 3  # a full collection still finds cyclic garbage


def test_objects_frozen_on_purpose_stay_frozen():
    before = [Node() for _ in range(10)]
    gc.freeze()
    try:
        with collector_paused():
            kept = [Node() for _ in range(100)]
        # still frozen: in no generation (an unfreeze would have put them in the oldest)
        # (the freeze count itself drifts: frozen objects other threads free leave it)
        assert gc.get_freeze_count() > 0
        assert sum(_in_generation(before, g) for g in range(3)) == 0
        assert _in_generation(kept, 2) == 0  # left among the young
    finally:
        gc.unfreeze()


def test_a_paused_block_inside_another_leaves_the_collector_off():
    with collector_paused():
        with collector_paused():
            pass
        assert not gc.isenabled()
    assert gc.isenabled()
