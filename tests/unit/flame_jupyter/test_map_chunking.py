"""The chunk-size rule of ``svc.map`` (pure)."""

from __future__ import annotations

from flame_jupyter import map_chunking as rule


def test_known_total_gives_every_slot_at_least_four_chunks() -> None:
    assert rule.chunk_cap(10_000, 2) == 1250
    assert rule.chunk_cap(10_000, 4) == 625
    assert rule.chunk_cap(3, 8) == 1
    assert rule.chunk_cap(None, 2) == rule.MAX_CHUNK
    for total, slots in ((10_000, 2), (999, 3), (50, 16)):
        size = rule.next_chunk_size(total, slots, 1e-9)
        assert -(-total // size) >= min(total, rule.MIN_CHUNKS_PER_SLOT * slots)


def test_first_chunks_are_small_until_measured() -> None:
    assert rule.first_chunk_size(10_000, 2) == rule.FIRST_CHUNK
    assert rule.first_chunk_size(20, 2) == 3  # 20 items / (4 chunks x 2 slots)
    assert rule.next_chunk_size(10_000, 2, None) == rule.FIRST_CHUNK


def test_measured_chunks_run_about_a_tenth_of_a_second() -> None:
    assert rule.next_chunk_size(None, 2, 0.001) == 100  # 1 ms items: 100 per chunk
    assert rule.next_chunk_size(None, 2, 0.01) == 10
    assert rule.next_chunk_size(None, 2, 5.0) == 1  # long items: one per task
    size = rule.next_chunk_size(None, 2, 0.0004)
    assert rule.MIN_CHUNK_SECONDS <= size * 0.0004 <= rule.MAX_CHUNK_SECONDS
    assert rule.next_chunk_size(10_000, 2, 1e-7) == 1250  # trivial items: capped by the slots rule


def test_a_set_chunksize_wins_and_in_flight_is_bounded() -> None:
    assert rule.next_chunk_size(10_000, 2, 1e-7, chunksize=7) == 7
    assert rule.first_chunk_size(None, 2, chunksize=0) == 1
    assert rule.max_in_flight(2) == 6 and rule.max_in_flight(1) == 3
    assert rule.max_in_flight(2, measured=False) == 2


def test_slots_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("FLAME_JUPYTER_MAP_SLOTS", "5")
    assert rule.instance_slots() == 5
    monkeypatch.setenv("FLAME_JUPYTER_MAP_SLOTS", "x")
    assert rule.instance_slots() >= 1
