"""Curriculum: p(1-p) weighting, level unlocking, and its state round trip."""

from collections import Counter

import pytest

from acpo.curriculum import WINDOW, Curriculum
from acpo.tasks import Problem


def pool():
    return [Problem(f"a{lv}-{i}", "arith", lv, f"Q{lv}-{i}", "1") for lv in (1, 2) for i in range(4)]


def test_sampling_prefers_problems_solved_about_half_the_time():
    cur = Curriculum(pool(), {"arith": {1}}, enabled=True, eps=0.01, seed=0)
    solved, mixed, failed = cur.pool[0], cur.pool[1], cur.pool[2]
    cur.update(solved, [1.0] * 30)
    cur.update(mixed, [1.0, 0.0] * 15)
    cur.update(failed, [0.0] * 30)
    counts = Counter(p.id for _ in range(2000) for p in cur.sample(1))
    # weights: p(1-p)+eps with p = (hits + 0.5) / (n + 1)
    w = {p.id: cur.pass_rate(p) * (1 - cur.pass_rate(p)) + 0.01 for p in cur.pool[:4]}
    share = counts[mixed.id] / 2000
    assert share == pytest.approx(w[mixed.id] / sum(w.values()), abs=0.03)
    assert counts[mixed.id] > 5 * counts[solved.id]
    assert all(p.level == 1 for p in cur.sample(4))  # level 2 not unlocked yet


def test_level_unlocks_after_a_window_above_threshold():
    cur = Curriculum(pool(), {"arith": {1}}, enabled=True, unlock_threshold=0.8, seed=0)
    cur.update(cur.pool[0], [1.0] * (WINDOW - 1))
    assert cur.levels["arith"] == {1}
    cur.update(cur.pool[0], [1.0])
    assert cur.levels["arith"] == {1, 2}


def test_state_round_trip_reproduces_sampling():
    a = Curriculum(pool(), {"arith": {1, 2}}, seed=3)
    a.update(a.pool[0], [1.0, 0.0])
    b = Curriculum(pool(), {"arith": {1}}, seed=99)
    b.load_state_dict(a.state_dict())
    assert [p.id for p in a.sample(5)] == [p.id for p in b.sample(5)]


def test_empty_pool_is_an_error():
    with pytest.raises(ValueError, match="training pool is empty"):
        Curriculum([], {})
