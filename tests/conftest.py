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
