"""StampSync names the images it discards unpaired, and the warning names them and the newest CameraInfo (no ROS)."""
from scenedino_ros.sync import StampSync, unpaired_message

S = 1_000_000_000  # ns per second


def test_pairing_discards_the_older_image_and_names_it():
    s = StampSync()
    assert s.add_image(10 * S, 'img10') is None
    assert s.add_info(11 * S, 'info11') is None  # no image at 11 s yet
    pair = s.add_image(11 * S, 'img11')           # pairs; the image at 10 s is discarded
    assert pair.image == 'img11'
    assert s.take_discarded() == [10 * S]         # the discarded image, not the paired one
    assert s.take_discarded() == []
    # the newest CameraInfo received is known even though the paired one left the queue
    assert s.newest_info_stamp_ns() == 11 * S
    assert s.unpaired_images == 1


def test_info_pairing_an_image_discards_the_older_ones():
    s = StampSync()
    for t in (1, 2, 3):
        s.add_image(t * S, t)
    assert s.add_info(3 * S, 'i3').image == 3
    assert s.take_discarded() == [1 * S, 2 * S]
    assert s.newest_info_stamp_ns() == 3 * S


def test_queue_overflow_and_latest_info_mode():
    s = StampSync(queue_size=2)
    for t in (1, 2, 3):
        s.add_image(t * S, t)
    assert s.take_discarded() == [1 * S] and s.newest_info_stamp_ns() is None
    latest = StampSync(use_latest_info=True)
    latest.add_image(1 * S, 'a')
    latest.add_image(2 * S, 'b')
    assert latest.add_info(0, 'i').image == 'b'
    assert latest.take_discarded() == [1 * S]


def test_time_jump_forgets_the_newest_info_of_the_old_timeline():
    s = StampSync()
    s.add_image(100 * S, 'a')
    s.add_info(120 * S, 'old')
    s.add_info(5 * S, 'new')
    s.time_jump(5 * S)
    assert s.newest_info_stamp_ns() == 5 * S


def test_message_names_the_discarded_image_and_the_newest_camera_info():
    text = unpaired_message([10 * S + 250_000_000], 11 * S, '/cam/camera_info')
    assert text.startswith('discarded image at 10.250 s: no CameraInfo with a matching stamp')
    assert 'the newest CameraInfo on /cam/camera_info is stamped 11.000 s' in text
    assert 'nan' not in text
    many = unpaired_message([1 * S, 2 * S, 3 * S], None, '/cam/camera_info')
    assert many.startswith('discarded 3 images (the newest at 3.000 s)')
    assert 'no CameraInfo has arrived on /cam/camera_info yet' in many


def test_the_warning_after_many_pairs_is_not_nan():
    """The issue's case: many pairs, then one image without a CameraInfo is discarded when the next one pairs."""
    s = StampSync()
    for t in range(1, 6):
        s.add_image(t * S, t)
        assert s.add_info(t * S, t).image == t
    s.add_image(6 * S, 6)              # its CameraInfo never comes
    s.add_info(7 * S, 7)
    assert s.add_image(7 * S, 7).image == 7
    text = unpaired_message(s.take_discarded(), s.newest_info_stamp_ns(), 'camera_info')
    assert text.startswith('discarded image at 6.000 s') and 'stamped 7.000 s' in text
