"""Shared test set-up: quiet TensorFlow, and the generated archives and pipeline runs the tests
read."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# The tests describe CPU runs (device, precision, timings): hide any GPU from TensorFlow, here and
# in the subprocesses the tests start, before TensorFlow is imported.
os.environ['CUDA_VISIBLE_DEVICES'] = ''

import pytest  # pylint: disable=g-import-not-at-top

from tests import fixtures  # pylint: disable=g-import-not-at-top

# Images per class in the session's generated archive.
TRAIN_PER_CLASS, TEST_PER_CLASS = 8, 3


@pytest.fixture(scope='session')
def cifar_archive(tmp_path_factory):
  """A small cifar-100-python.tar.gz (8 train, 3 test images per class) and its pixels."""
  path = str(tmp_path_factory.mktemp('cifar') / 'cifar-100-python.tar.gz')
  return path, fixtures.write_cifar100_archive(path, train_per_class=TRAIN_PER_CLASS,
                                               test_per_class=TEST_PER_CLASS)


def short_run_config(archive: str, output_dir: str, **training):
  """The session's run: 20 classes of the archive, simple_cnn for 2 short epochs."""
  from base.configs import DataConfig, PipelineConfig, RunnerConfig, TrainingConfig  # pylint: disable=g-import-not-at-top
  settings = dict(model='simple_cnn', epochs=2, batch_size=32, optimizer='adam',
                  learning_rate=1e-3, schedule='constant')
  return PipelineConfig(
      data=DataConfig(data=archive, trust_data=True, team_seed=2, num_classes=20),
      training=TrainingConfig(**{**settings, **training}),
      runner=RunnerConfig(output_dir=output_dir))


@pytest.fixture(scope='session')
def pipeline_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('pipeline'))


@pytest.fixture(scope='session')
def data_run(cifar_archive, pipeline_dir):
  """ExampleGen .. ValidationGate of the session's run, shared by the data tests:
  (resolved config, split sizes from the preflight)."""
  from tests import e2e  # pylint: disable=g-import-not-at-top
  return e2e.run_data_components(short_run_config(cifar_archive[0], pipeline_dir))


@pytest.fixture(scope='session')
def pipeline_run(data_run):
  """The whole pipeline, in the same output folder as `data_run` (whose components it reuses
  from the cache), shared by every test that reads its outputs: (resolved config, split sizes)."""
  from tests import e2e  # pylint: disable=g-import-not-at-top
  config, sizes = data_run
  e2e.run_resolved(config)
  return config, sizes
