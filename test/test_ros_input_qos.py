"""scenedino_ros.input_qos: the subscription reliability chosen from the publishers' offered QoS (no ROS needed for the
decision; the rclpy adapter is exercised by test_ros_node.py and benchmarks/image_delivery.py)."""
import re

import pytest

from scenedino_ros.input_qos import choose_reliability, offered_reliability


@pytest.mark.parametrize('offered, current, expected, reason', [
    ([], None, 'best_effort', 'no publisher yet'),
    ([], 'reliable', 'reliable', 'keeping reliable'),
    ([], 'best_effort', 'best_effort', 'keeping best_effort'),
    (['reliable'], None, 'reliable', 'the publisher offers reliable'),
    (['reliable'] * 3, 'best_effort', 'reliable', 'all 3 publishers offer reliable'),
    (['best_effort'], None, 'best_effort', '1 of 1 publisher'),
    (['reliable', 'best_effort'], 'reliable', 'best_effort', '1 of 2 publisher'),
    (['reliable', 'unknown'], None, 'best_effort', 'best effort \\(or unknown\\)'),
], ids=['none', 'none_keeps_reliable', 'none_keeps_best_effort', 'one_reliable', 'all_reliable', 'one_best_effort',
        'mixed', 'unknown_counts_as_best_effort'])
def test_auto_follows_the_publishers(offered, current, expected, reason):
    choice = choose_reliability(offered, 'auto', current)
    assert choice.reliability == expected
    assert re.search(reason, choice.reason), choice.reason


@pytest.mark.parametrize('mode', ['reliable', 'best_effort'])
def test_fixed_modes_ignore_the_publishers(mode):
    for offered in ([], ['reliable'], ['best_effort'], ['reliable', 'best_effort']):
        choice = choose_reliability(offered, mode)
        assert choice.reliability == mode and 'input.reliability is' in choice.reason


def test_unknown_mode():
    with pytest.raises(ValueError, match="'fast' is not one of"):
        choose_reliability([], 'fast')


def test_offered_reliability_of_rclpy_policies():
    qos = pytest.importorskip('rclpy.qos', reason='rclpy is not installed')
    P = qos.ReliabilityPolicy
    assert offered_reliability(P.RELIABLE) == 'reliable'
    assert offered_reliability(P.BEST_EFFORT) == 'best_effort'
    assert offered_reliability(P.UNKNOWN) == offered_reliability(P.SYSTEM_DEFAULT) == 'unknown'
    assert offered_reliability('RELIABLE') == 'reliable'
