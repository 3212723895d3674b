"""The whole pipeline on generated data, once, and what each component left behind."""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from modules import trainer as trainer_module
from pipeline import constants
from pipeline.configs import DataConfig, PipelineConfig, RunnerConfig, TrainingConfig
from tests import e2e

pytestmark = pytest.mark.e2e


@pytest.fixture(scope='module')
def run(cifar_archive, tmp_path_factory):
  config = PipelineConfig(
      data=DataConfig(data=cifar_archive[0], trust_data=True, team_seed=2, num_classes=20),
      training=TrainingConfig(model='simple_cnn', epochs=2, batch_size=32, optimizer='adam',
                              learning_rate=1e-3, schedule='constant'),
      runner=RunnerConfig(output_dir=str(tmp_path_factory.mktemp('pipeline'))))
  config, sizes = e2e.run_pipeline(config)
  return config, sizes


def test_training_stats_next_to_the_model(run):
  config, sizes = run
  model_dir, _ = e2e.model_dirs(config)
  with open(os.path.join(model_dir, constants.TRAINING_STATS_FILE)) as f:
    stats = json.load(f)
  assert stats['model'] == 'simple_cnn' and stats['epochs'] == 2
  assert len(stats['epoch_time_sec']) == 2 and all(t > 0 for t in stats['epoch_time_sec'])
  assert stats['ms_per_step'] > 0 and stats['examples_per_sec'] > 0
  assert stats['total_params'] == 121_920 + 65 * 20 == stats['trainable_params']
  assert stats['train_examples'] == sizes['train'] and stats['eval_examples'] == sizes['eval']
  assert stats['steps_per_epoch'] == [5, 5]  # ceil(140 / 32)
  assert stats['device_type'] == 'CPU' and stats['peak_host_memory_mib'] > 0
  assert len(stats['val_accuracy']) == 2


def test_model_carries_its_provenance(run):
  config, _ = run
  model_dir, run_dir = e2e.model_dirs(config)
  extra = os.path.join(model_dir, 'Format-Serving', 'assets.extra')
  with open(os.path.join(extra, constants.CLASSES_FILE)) as f:
    assert json.load(f)['class_names'] == list(config.data.class_names)
  with open(os.path.join(extra, 'training_config.json')) as f:
    assert json.load(f)['model'] == 'simple_cnn'
  with open(os.path.join(extra, 'versions.json')) as f:
    assert json.load(f)['tensorflow'] == tf.__version__
  assert os.listdir(os.path.join(run_dir, 'logs'))  # TensorBoard logs in the ModelRun artifact


def test_serving_signature_matches_the_training_path(run):
  """Raw PNG examples through serving_default == the Keras model on Transform's output."""
  config, _ = run
  model_dir, run_dir = e2e.model_dirs(config)
  loaded = tf.saved_model.load(os.path.join(model_dir, 'Format-Serving'))
  serve = loaded.signatures[constants.SERVING_SIGNATURE]
  transform = loaded.signatures[constants.TRANSFORM_SIGNATURE]
  raw = e2e.serialized_split(config, constants.EVAL_SPLIT)
  # Serving examples carry only the image.
  images_only = [tf.train.Example(features=tf.train.Features(feature={
      constants.IMAGE_KEY: tf.train.Example.FromString(r).features.feature[constants.IMAGE_KEY]
  })).SerializeToString() for r in raw]
  served = serve(examples=tf.constant(images_only))
  probabilities = served[constants.PROBABILITIES_OUTPUT].numpy()
  assert probabilities.shape == (len(raw), 20)
  np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)

  # The training-time path: Transform's materialised eval split into the saved Keras model.
  spec = {constants.IMAGE_XF_KEY: tf.io.FixedLenFeature([32, 32, 3], tf.float32),
          constants.LABEL_XF_KEY: tf.io.FixedLenFeature([], tf.int64)}
  materialized = tf.io.parse_example(
      e2e.serialized_split(config, constants.EVAL_SPLIT, e2e.TRANSFORM), spec)
  materialized_images = materialized[constants.IMAGE_XF_KEY].numpy()
  via_signature = transform(examples=tf.constant(raw))[constants.IMAGE_XF_KEY].numpy()
  # Same preprocessing at serving time as in Transform (compared as sets: Beam may reorder).
  assert sorted(i.tobytes() for i in via_signature) == sorted(
      i.tobytes() for i in materialized_images)
  model = keras.models.load_model(os.path.join(run_dir, trainer_module.KERAS_MODEL_FILE),
                                  compile=False)
  expected = tf.nn.softmax(model(materialized_images)).numpy()
  by_image = {image.tobytes(): p for image, p in zip(materialized_images, expected)}
  np.testing.assert_allclose(probabilities, [by_image[i.tobytes()] for i in via_signature],
                             atol=1e-5)
  np.testing.assert_array_equal(
      served[constants.CLASS_NAME_OUTPUT].numpy().astype(str),
      np.array(config.data.class_names)[probabilities.argmax(axis=1)])
