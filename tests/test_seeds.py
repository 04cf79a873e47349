"""Seeds derived by key: workers and repeats of different --seed values never coincide."""

import optuna

from rectune.seeds import REPEAT, WORKER, derived_seed
from rectune.tuning import load_search_space, make_sampler


def first_proposals(seed: int, n: int = 5) -> list[dict]:
    space = load_search_space("als", "default")
    study = optuna.create_study(direction="maximize", sampler=make_sampler("tpe", seed, space))
    proposals = []
    for _ in range(n):
        trial = study.ask()
        proposals.append(space.suggest(trial))
        study.tell(trial, 0.0)
    return proposals


def test_index_zero_is_the_seed_itself():
    assert derived_seed(42, WORKER, 0) == 42
    assert derived_seed(42, REPEAT, 0) == 42


def test_derived_seeds_are_fixed_and_differ_by_seed_stream_and_index():
    # Pinned: the same --seed must give the same numbers in every release.
    assert derived_seed(42, WORKER, 1) == 500939758
    assert derived_seed(42, WORKER, 2) == 4007147622
    seeds = {
        derived_seed(seed, stream, index)
        for seed in range(40, 50)
        for stream in (WORKER, REPEAT)
        for index in range(1, 6)
    }
    assert len(seeds) == 10 * 2 * 5
    assert not seeds & set(range(40, 50))


def test_worker_1_of_seed_42_and_worker_0_of_seed_43_propose_different_trials():
    worker_1_of_42 = first_proposals(derived_seed(42, WORKER, 1))
    worker_0_of_43 = first_proposals(derived_seed(43, WORKER, 0))
    assert worker_1_of_42 != worker_0_of_43
    # What adding numbers gave (42 + 1): the very same trials.
    assert first_proposals(42 + 1) == worker_0_of_43
