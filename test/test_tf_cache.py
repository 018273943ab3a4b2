"""TransformCache: the TF buffer used without tf2_ros (wheel setups, offline bags)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from scenedino_ros.frames import invert
from scenedino_ros.tf_cache import TransformCache, TransformLookupError

S = 1_000_000_000


def rigid(yaw_deg: float, xyz) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("z", yaw_deg, degrees=True).as_matrix()
    T[:3, 3] = xyz
    return T


@pytest.fixture
def cache():
    c = TransformCache(cache_s=100.0)
    # odom <- base_link moves along x and turns; base_link <- camera is static
    c.set_transform("odom", "base_link", 10 * S, rigid(0, [0, 0, 0]))
    c.set_transform("odom", "base_link", 12 * S, rigid(90, [2, 0, 0]))
    c.set_transform("base_link", "camera", 0, rigid(-90, [0.5, 0, 1.5]), static=True)
    c.set_transform("odom", "landmark", 0, rigid(0, [5, 5, 0]), static=True)
    return c


def test_chain_and_static(cache):
    got = cache.lookup("odom", "camera", 10 * S)
    np.testing.assert_allclose(got, rigid(0, [0, 0, 0]) @ rigid(-90, [0.5, 0, 1.5]), atol=1e-12)
    np.testing.assert_allclose(cache.lookup("camera", "odom", 12 * S),
                               invert(rigid(90, [2, 0, 0]) @ rigid(-90, [0.5, 0, 1.5])), atol=1e-12)


def test_interpolates_translation_and_rotation(cache):
    mid = cache.lookup("odom", "base_link", 11 * S)
    np.testing.assert_allclose(mid, rigid(45, [1, 0, 0]), atol=1e-9)


def test_through_a_common_ancestor(cache):
    got = cache.lookup("landmark", "camera", 12 * S)
    expected = invert(rigid(0, [5, 5, 0])) @ rigid(90, [2, 0, 0]) @ rigid(-90, [0.5, 0, 1.5])
    np.testing.assert_allclose(got, expected, atol=1e-12)


@pytest.mark.parametrize("target, source, stamp, match", [
    ("odom", "camera", 9 * S, "extrapolation"),
    ("odom", "camera", 13 * S, "extrapolation"),
    ("odom", "nowhere", 11 * S, "'nowhere' has not been received"),
])
def test_lookup_errors_name_the_problem(cache, target, source, stamp, match):
    with pytest.raises(TransformLookupError, match=match):
        cache.lookup(target, source, stamp)


def test_unconnected_trees(cache):
    cache.set_transform("map", "gps", 0, np.eye(4), static=True)
    with pytest.raises(TransformLookupError, match="not connected"):
        cache.lookup("map", "camera", 11 * S)


def test_extrapolation_tolerance():
    c = TransformCache(max_extrapolation_s=0.5)
    c.set_transform("odom", "base", 10 * S, rigid(0, [1, 0, 0]))
    np.testing.assert_allclose(c.lookup("odom", "base", 10 * S + S // 4), rigid(0, [1, 0, 0]))
    with pytest.raises(TransformLookupError):
        c.lookup("odom", "base", 11 * S)


def test_history_is_trimmed_and_clear_keeps_static():
    c = TransformCache(cache_s=2.0)
    for t in range(10):
        c.set_transform("odom", "base", t * S, rigid(0, [t, 0, 0]))
    c.set_transform("base", "cam", 0, np.eye(4), static=True)
    with pytest.raises(TransformLookupError, match="extrapolation"):
        c.lookup("odom", "base", 5 * S)
    np.testing.assert_allclose(c.lookup("odom", "cam", 8 * S)[:3, 3], [8, 0, 0])
    c.clear()
    assert c.frames() == {"base", "cam"}


def test_bad_transforms_are_refused():
    c = TransformCache()
    with pytest.raises(ValueError, match="two different frame names"):
        c.set_transform("a", "a", 0, np.eye(4))
    bad = np.eye(4)
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        c.set_transform("a", "b", 0, bad)


def test_reads_tf_messages_of_a_converted_bag():
    """TFMessages as scenedino-kitti360-to-bag writes them (rosbags classes) fill the cache."""
    from scenedino_ros.bag.kitti360 import tf_message
    c = TransformCache()
    pose = rigid(30, [3, -1, 0.2])
    assert c.add_message(tf_message(5 * S, {"base_link": pose}, "map")) == 1
    np.testing.assert_allclose(c.lookup("map", "base_link", 5 * S), pose, atol=1e-9)
