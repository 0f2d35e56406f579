"""An agent's counters across a software upgrade: a checkpoint of an earlier version still loads."""

import pytest

from fleet.edge.counters import Counters
from fleet.errors import ConfigError


def test_counters_added_since_the_checkpoint_start_at_zero():
    saved = Counters(ticks=7, sent=3).as_dict()
    del saved["forecast_updates"], saved["write_errors"]  # as a board of the previous version saved them
    loaded = Counters.from_dict(saved)
    assert (loaded.ticks, loaded.sent, loaded.forecast_updates, loaded.write_errors) == (7, 3, 0, 0)


@pytest.mark.parametrize(
    "saved, match",
    [
        ({**Counters().as_dict(), "from_the_future": 1}, "unknown.*from_the_future"),
        ({**Counters().as_dict(), "ticks": "7"}, "'ticks' is not a number"),
        ({**Counters().as_dict(), "ticks": True}, "'ticks' is not a number"),
        ([1, 2], "not those of this version"),
    ],
)
def test_counters_that_are_not_this_versions_are_refused(saved, match):
    with pytest.raises(ConfigError, match=match):
        Counters.from_dict(saved)
