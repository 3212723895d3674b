"""Shared test set-up: quiet TensorFlow, and the generated archives the tests read."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import pytest  # pylint: disable=g-import-not-at-top

from tests import fixtures  # pylint: disable=g-import-not-at-top


@pytest.fixture(scope='session')
def cifar_archive(tmp_path_factory):
  """A small cifar-100-python.tar.gz (8 train, 3 test images per class) and its pixels."""
  path = str(tmp_path_factory.mktemp('cifar') / 'cifar-100-python.tar.gz')
  return path, fixtures.write_cifar100_archive(path, train_per_class=8, test_per_class=3)


@pytest.fixture(scope='session')
def pipeline_run(cifar_archive, tmp_path_factory):
  """One run of the whole pipeline on the generated archive (simple_cnn, 2 short epochs),
  shared by every test that reads its outputs: (resolved config, split sizes)."""
  from base.configs import DataConfig, PipelineConfig, RunnerConfig, TrainingConfig
  from tests import e2e
  config = PipelineConfig(
      data=DataConfig(data=cifar_archive[0], trust_data=True, team_seed=2, num_classes=20),
      training=TrainingConfig(model='simple_cnn', epochs=2, batch_size=32, optimizer='adam',
                              learning_rate=1e-3, schedule='constant'),
      runner=RunnerConfig(output_dir=str(tmp_path_factory.mktemp('pipeline'))))
  return e2e.run_pipeline(config)
