"""pip install path: the pure-Python core (usable without ROS) and the ROS tools.

`colcon build` uses CMakeLists.txt instead (messages + the same Python packages).
"""

from glob import glob

from setuptools import find_packages, setup

setup(
    # Not "alpamayo": that is the ROS package whose generated `alpamayo.msg` module is
    # installed into the same site-packages by scripts/build_interfaces.sh.
    name="alpamayo-ros",
    version="0.1.0",
    description="Alpamayo-R1 vision-language-action driving model: core library and ROS 2 node",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["alpamayo_core", "alpamayo_core.*", "alpamayo_ros",
                                    "alpamayo_ros.*"]),
    # The embedded demo model (a model folder inside the core package).
    package_data={"alpamayo_core": ["demo_model/*.json", "demo_model/*.safetensors",
                                    "demo_model/*.txt", "demo_model/*.jinja"]},
    # The ROS package's data files, where alpamayo_ros.tools.share looks for them after a plain
    # pip install (a colcon build installs the same files into its share directory).
    data_files=[("share/alpamayo", ["package.xml"]),
                *((f"share/alpamayo/{d}", sorted(glob(f"{d}/*.*"))) for d in
                  ("config", "launch", "msg", "srv"))],
    install_requires=["numpy", "torch", "transformers", "safetensors", "scipy", "jinja2"],
    # `alpamayo-eval BAGS --ray ...`: many bags on Ray (local or a cluster).
    extras_require={"fleet": ["ray==2.58.0"]},
    entry_points={
        "console_scripts": [
            "alpamayo-plan = alpamayo_core.cli.plan:main",
            "alpamayo-prepare = alpamayo_core.cli.prepare:main",
            "alpamayo-make-tiny = alpamayo_core.cli.make_tiny:main",
            "alpamayo-export = alpamayo_core.cli.export:main",
            "alpamayo-node = alpamayo_ros.__main__:main",
            "alpamayo-synth = alpamayo_ros.cli.synth:main",
            "alpamayo-replay = alpamayo_ros.cli.replay:main",
            "alpamayo-eval = alpamayo_ros.cli.evaluate:main",
            "alpamayo-record = alpamayo_ros.tools.record:main",
            "alpamayo-demo = alpamayo_ros.tools.demo:main",
            "alpamayo-train = alpamayo_ros.cli.train:main",
        ],
    },
)
