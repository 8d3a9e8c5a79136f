"""Synthetic drives (no ROS): roads and speed profiles, rendered cameras, noisy odometry."""
