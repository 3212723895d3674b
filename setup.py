"""Package metadata: the user code that Beam/Dataflow workers and the pipeline image need."""
import setuptools

# The stack: TFX 1.16's own versions (README.md, "Architecture"). requirements.lock pins the whole tree.
INSTALL_REQUIRES = [
    'tfx==1.16.0',
    'tensorflow==2.16.2',
    'tf-keras==2.16.0',
    'keras==3.6.0',
    'keras-tuner==1.4.7',
    'apache-beam[gcp]==2.59.0',
    'kfp==2.5.0',
    'pillow',
    'google-crc32c',  # datasources/encoding.py frames TFRecords with it
]
EXTRAS_REQUIRE = {
    'dev': ['pytest', 'hypothesis', 'nbformat', 'nbclient', 'ipykernel', 'matplotlib', 'pandas'],
}

setuptools.setup(
    name='cifar100-tfx',
    version='0.1.0',
    description='TFX pipeline that trains, tunes, evaluates and compares image classifiers on a '
    "team's CIFAR-100 classes",
    python_requires='>=3.10,<3.11',
    packages=setuptools.find_packages(include=['base*', 'datasources*', 'components*', 'modules*', 'pipeline*']),
    py_modules=['local_runner', 'kubeflow_runner'],
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
)
