"""Whether the node runs with the Fast DDS profile for large images (``config/fastdds_large_images.xml``).

The profile makes the node receive user data over UDP into a 16 MiB socket buffer instead of through the
publisher's 512 KiB shared-memory segment, which a best-effort camera driver overruns with images of more than
about 0.5 MB (docs/ros_node.md, "Input QoS and large images"). The buffer is capped by the kernel's
``net.core.rmem_max``; below ``MIN_RMEM_MAX`` UDP would lose more than shared memory does, so the profile is left
out. ``launch/scenedino.launch.py`` calls ``choose_profile`` and sets ``FASTDDS_DEFAULT_PROFILES_FILE`` for the
node alone; no ROS is needed here.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

#: File name of the profile in ``config/`` (source tree and ``share/scenedino_ros``).
PROFILE_NAME = "fastdds_large_images.xml"
#: Environment variable Fast DDS reads the default profile file from.
PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"
#: Smallest ``net.core.rmem_max`` (bytes) for which the profile is used: the kernel then grants at least 8 MiB
#: (twice the capped request), room for one 1920x1080 rgb8 image (6.2 MB) in the socket buffer.
MIN_RMEM_MAX = 4 * 1024 * 1024
#: ``RMW_IMPLEMENTATION`` values that read Fast DDS profiles.
FASTDDS_RMWS = ("rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")
RMEM_MAX_FILE = Path("/proc/sys/net/core/rmem_max")


def read_rmem_max(path: Path = RMEM_MAX_FILE) -> int | None:
    """``net.core.rmem_max`` in bytes, None where it cannot be read (not Linux)."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def choose_profile(setting: str, environ: Mapping[str, str], rmem_max: int | None,
                   config_dir: Path) -> tuple[Path | None, str]:
    """The profile file to give the node (None: none), and the reason, for the log.

    Args:
        setting: ``auto`` (the shipped profile when it can help), ``none`` / empty (never), or a file path.
        environ: the environment the node would start with (``FASTDDS_DEFAULT_PROFILES_FILE``,
            ``RMW_IMPLEMENTATION``).
        rmem_max: ``net.core.rmem_max`` in bytes (``read_rmem_max``), None if unknown.
        config_dir: the folder holding ``PROFILE_NAME``.

    Raises:
        FileNotFoundError: ``setting`` names a file that does not exist.
    """
    if setting.lower() in ("", "none", "off", "false"):
        return None, f"dds_profile:={setting or 'none'}: Fast DDS defaults"
    if setting != "auto":
        path = Path(setting)
        if not path.is_file():
            raise FileNotFoundError(f"dds_profile '{setting}' does not exist")
        return path, f"Fast DDS profile {path} (dds_profile argument)"
    if environ.get(PROFILE_ENV):
        return None, f"{PROFILE_ENV} is already set ({environ[PROFILE_ENV]}): keeping it"
    rmw = environ.get("RMW_IMPLEMENTATION", "")
    if rmw and rmw not in FASTDDS_RMWS:
        return None, f"RMW_IMPLEMENTATION is {rmw}: the Fast DDS profile does not apply"
    if rmem_max is None or rmem_max < MIN_RMEM_MAX:
        have = "unknown" if rmem_max is None else f"{rmem_max} bytes"
        return None, (f"net.core.rmem_max is {have}, below {MIN_RMEM_MAX}: Fast DDS defaults, so large images from "
                      "best-effort publishers may be lost (raise it: sudo sysctl -w "
                      f"net.core.rmem_max={MIN_RMEM_MAX * 4})")
    return config_dir / PROFILE_NAME, (f"Fast DDS profile {config_dir / PROFILE_NAME}: large images over UDP into a "
                                       "16 MiB socket buffer")
