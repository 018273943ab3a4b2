"""Bag tools without a ROS distribution: KITTI-360 drives to rosbag2 (``kitti360``), the node's processing over a
bag (``process``, ``summary``), a player with ``/clock`` (``replay``) and the shared writer settings (``io``)."""
