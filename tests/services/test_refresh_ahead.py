"""RefreshClaims: an entry due for a refresh goes to one caller until it is settled."""

from __future__ import annotations

import threading

from policyd.services.refresh_ahead import RefreshClaims


def test_a_key_is_taken_once_until_settled():
    claims = RefreshClaims()
    assert claims.take("ada") is True
    assert claims.take("ada") is False
    assert claims.take("bob") is True
    claims.settle("ada")
    assert claims.take("ada") is True
    claims.clear()
    assert claims.take("ada") is True and claims.take("bob") is True


def test_of_many_threads_taking_one_key_exactly_one_wins():
    claims = RefreshClaims()
    start = threading.Barrier(16)
    won: list[bool] = []

    def take() -> None:
        start.wait()
        won.append(claims.take("ada"))

    threads = [threading.Thread(target=take) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert won.count(True) == 1
