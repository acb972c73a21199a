"""The chain schedule: phases, kept samples, lengths derived from ``steps``, refusals before training."""

import pytest

from liftpeft.core.schedule import ChainSchedule, derived_phase_lengths
from liftpeft.methods.lift import LiftConfig


def test_phases_and_kept_steps_follow_the_definition():
    s = ChainSchedule(steps=20, warmup=3, burnin=4, thin=5)
    assert [s.phase(t) for t in (0, 2, 3, 6, 7, 19)] == ["warmup"] * 2 + ["burnin"] * 2 + ["sampling"] * 2
    kept = [t for t in range(20) if s.keeps(t)]
    assert kept == [7, 12, 17]
    assert s.n_samples == len(kept)


def test_unset_phase_lengths_are_stated_fractions_of_steps():
    assert derived_phase_lengths(20_000, None, None) == (1_000, 2_000)  # the paper's numbers
    assert derived_phase_lengths(2_000, None, 7) == (100, 7)


def test_the_readme_example_steps_alone_gives_a_valid_schedule():
    config = LiftConfig(k=5, steps=2000)
    assert (config.warmup_steps, config.burnin_steps) == (100, 200)
    assert config.n_samples == 170


def test_too_few_samples_for_k_is_refused_when_the_config_is_built():
    with pytest.raises(ValueError, match=r"keeps 2 samples.*too few for a mixture of K=5"):
        LiftConfig(k=5, steps=1200, warmup_steps=1000, burnin_steps=180, thin=10)
    with pytest.raises(ValueError, match="must exceed warmup_steps"):
        LiftConfig(steps=2000, warmup_steps=1000, burnin_steps=2000)
