"""Package metadata: the user code that Beam/Dataflow workers and the pipeline image need."""
import setuptools

# Two stacks (docs/stacks.md), told apart by the Python version: TFX 1.16's own versions on Python
# 3.10, TFX 1.21's on 3.11-3.13. requirements.lock and requirements-tfx121.lock pin each whole tree.
TFX116 = '; python_version < "3.11"'
TFX121 = '; python_version >= "3.11"'
INSTALL_REQUIRES = [
    'tfx==1.16.0' + TFX116,
    'tensorflow==2.16.2' + TFX116,
    'tf-keras==2.16.0' + TFX116,
    'keras==3.6.0' + TFX116,
    'keras-tuner==1.4.7' + TFX116,
    'apache-beam[gcp]==2.59.0' + TFX116,
    'kfp==2.5.0' + TFX116,
    'tfx==1.21.0' + TFX121,
    'tensorflow==2.21.0' + TFX121,
    'tf-keras==2.21.0' + TFX121,
    'keras==3.15.1' + TFX121,
    'keras-tuner==1.4.8' + TFX121,
    'apache-beam[gcp]==2.77.0' + TFX121,
    'kfp-pipeline-spec==2.16.1' + TFX121,  # TFX 1.21 offers kfp only below Python 3.12
    'tensorboard==2.21.0' + TFX121,  # TensorFlow 2.21 no longer brings it; keras' TensorBoard callback needs it
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
    python_requires='>=3.10,<3.14',
    packages=setuptools.find_packages(include=['base*', 'datasources*', 'components*', 'modules*', 'pipeline*']),
    py_modules=['local_runner', 'kubeflow_runner'],
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
)
