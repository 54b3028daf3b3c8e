"""ROS 2 layer of ADU-Depth: the only package that imports rclpy."""
