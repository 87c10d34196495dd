"""bench.peer's verdict over several rounds: the median of each round's ratios."""

from __future__ import annotations

from bench.peer import Ratios, Result, median_ratios, ratios_of


def round_of(bridge: float, alertmanager: float | None, forwarder: float) -> list[Result]:
    """One round: throughputs per peer, CPU per notification the inverse, p99 fixed."""
    peers = [("bridge", bridge), ("alertmanager", alertmanager), ("forwarder", forwarder)]
    return [Result(name=name) if rate is None
            else Result(name=name, throughput=rate, cpu_ms=1000 / rate, p99_ms=10.0)
            for name, rate in peers]


def test_a_round_compares_the_bridge_with_each_peer_it_ran_beside() -> None:
    figures = ratios_of(round_of(3000, 2000, 4000))
    assert figures["alertmanager"] == Ratios(throughput=1.5, cpu=2000 / 3000, p99=1.0)
    assert figures["forwarder"] == Ratios(throughput=0.75, cpu=4000 / 3000, p99=1.0)


def test_a_peer_that_did_not_run_gives_its_reason_instead_of_ratios() -> None:
    results = round_of(3000, None, 4000)
    results[1].note = "skipped: not installed"
    assert ratios_of(results)["alertmanager"] == "skipped: not installed"


def test_the_verdict_is_the_median_of_the_rounds_not_their_mean() -> None:
    rounds = [round_of(3000, 2000, 4000), round_of(3000, 1000, 4000), round_of(3000, 2500, 4000)]
    lines = median_ratios(rounds).splitlines()
    assert lines[0].startswith("bridge/alertmanager: throughput 1.50x, CPU/notification 0.67x")
    assert lines[1].startswith("bridge/forwarder: throughput 0.75x")


def test_rounds_where_a_peer_did_not_run_are_left_out_of_its_median() -> None:
    rounds = [round_of(3000, None, 4000), round_of(3000, 2000, 4000)]
    assert median_ratios(rounds).splitlines()[0].startswith("bridge/alertmanager: throughput 1.50x")
