"""ROS 2 interface of SceneDINO: node, message conversions; generated messages in scenedino_ros.msg."""
__path__ = __import__('pkgutil').extend_path(__path__, __name__)
