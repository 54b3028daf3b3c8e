"""ament_python package `adu_depth`; also a plain pip package (`pip install -e ".[dev]"`) without ROS."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "adu_depth"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="ADU-Depth: stereo-to-mono distilled metric depth with uncertainty, for ROS 2",
    python_requires=">=3.10",
    packages=find_packages(
        include=["adu_depth_core", "adu_depth_core.*", "adu_depth_ros", "adu_depth_ros.*"]
    ),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz")),
        (f"share/{PACKAGE}/training/configs", glob("training/configs/*.yaml")),
    ],
    package_data={"adu_depth_core": ["recipes/*.yaml"]},
    install_requires=[
        "torch>=2.4",
        "timm>=1.0.8",
        "numpy>=1.24",
        # < 5: ROS 2 Jazzy's cv_bridge is built against OpenCV 4 (OpenCV 5 renumbered the type codes)
        "opencv-python>=4.8,<5",
        "pyyaml>=6.0",
        "rosbags>=0.10.4",
        "onnx>=1.16",
        "onnxruntime>=1.18",
        "onnxscript>=0.1",
        "tqdm>=4.66",
        "tensorboard>=2.14",
        "matplotlib>=3.7",
    ],
    extras_require={
        "tensorrt": ["tensorrt>=10.0"],
        "dev": [
            "pytest>=8.0,<9",  # launch_testing's pytest plugin does not load in pytest 9
            "pytest-timeout>=2.3",
            "ruff>=0.6",
            "mypy>=1.10",
            "rclpy-intellisense>=1.0",
        ],
    },
    zip_safe=True,
    entry_points={
        "console_scripts": [
            "adu-depth = adu_depth_core.cli:main",
            "depth_node = adu_depth_ros.depth_node:main",
            "eval_node = adu_depth_ros.eval_node:main",
        ],
    },
)
