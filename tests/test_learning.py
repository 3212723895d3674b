"""Models learn real photos through the pipeline: a sample of ../shared/data/real-photos-5class."""
import os
import tarfile

import pytest

from base.configs import DataConfig, PipelineConfig, RunnerConfig, TrainingConfig
from tests import e2e

pytestmark = pytest.mark.e2e

PHOTOS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), 'shared', 'data', 'real-photos-5class.tar.gz')
TRAIN_PER_CLASS, TEST_PER_CLASS = 300, 60


def extract_sample(target: str) -> None:
  """The first 300 photos of each class as train/, the last 60 as test/ (image-folder layout)."""
  with tarfile.open(PHOTOS) as tar:
    members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith('.jpg')]
    by_class = {}
    for member in sorted(members, key=lambda m: m.name):
      by_class.setdefault(member.name.split('/')[-2], []).append(member)
    split_of = {}
    for files in by_class.values():
      split_of.update({m.name: 'train' for m in files[:TRAIN_PER_CLASS]})
      split_of.update({m.name: 'test' for m in files[-TEST_PER_CLASS:]})
    for member in members:  # in archive order: a gzip stream cannot seek back cheaply
      if member.name in split_of:
        name, file_name = member.name.split('/')[-2:]
        folder = os.path.join(target, split_of[member.name], name)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, file_name), 'wb') as f:
          f.write(tar.extractfile(member).read())


@pytest.mark.skipif(not os.path.exists(PHOTOS), reason=f'{PHOTOS} is not on this machine')
# The default model, and airbench, whose first layer the training data sets (`models.adapt`).
@pytest.mark.parametrize('model', [TrainingConfig().model, 'airbench'])
def test_model_learns_real_photos(tmp_path, model):
  extract_sample(str(tmp_path / 'photos'))
  config = PipelineConfig(
      data=DataConfig(data=str(tmp_path / 'photos')),
      training=TrainingConfig(model=model, epochs=6, batch_size=64),  # its recipe, shorter
      runner=RunnerConfig(output_dir=str(tmp_path / 'out')))
  config, sizes = e2e.run_pipeline(config)
  assert sizes['test'] == 5 * TEST_PER_CLASS
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  result = tfma.load_eval_result(e2e.latest_artifact(config, 'ModelEvaluation').uri)
  overall = dict(result.slicing_metrics)[()]['']['']
  accuracy = overall['sparse_categorical_accuracy']['doubleValue']
  assert accuracy > 0.45, f'test accuracy {accuracy:.3f} on 5 classes (chance 0.2)'
