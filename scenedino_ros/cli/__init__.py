"""Command-line entry points of the bag tools and the demo: argument parsing and reporting over the modules of
``scenedino_ros.bag`` and ``scenedino_ros.demo``."""
