"""The Trainer's training loop on in-memory data: phases, precision and XLA paths, config checks."""
import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from modules import models, trainer, training
from base.configs import TrainingConfig
from base.errors import UserError
from tests import fixtures


def _data(n=64, classes=5, size=32):
  rng = np.random.default_rng(0)
  images = rng.random((n, size, size, 3), dtype=np.float32)
  labels = rng.integers(0, classes, n)
  train = tf.data.Dataset.from_tensor_slices((images, labels)).repeat().batch(16)
  return train, tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)


@pytest.fixture(autouse=True)
def _restore_policy():
  yield
  keras.mixed_precision.set_global_policy('float32')
  keras.backend.clear_session()


@pytest.mark.parametrize('precision,jit', [('mixed_float16', False), ('mixed_bfloat16', False),
                                           ('float32', True)])
def test_gpu_timing_paths_run_on_cpu(precision, jit):
  """--precision mixed_float16 / mixed_bfloat16 and --jit (XLA) are for GPUs; they must still
  train correctly on a CPU (tests/conftest.py hides any GPU from the test session). A narrow
  resnet, so that its fused BatchNorm kernel goes through each path too."""
  assert not tf.config.list_physical_devices('GPU')
  config = TrainingConfig(model='resnet', width=4, epochs=1, batch_size=16, precision=precision,
                          jit=jit)
  training.set_precision(precision)
  model = trainer.build(config, 5, 32)
  train, evaluation = _data()
  timer = trainer.train(config, model, train, evaluation, steps_per_epoch=3, validation_steps=4)
  assert len(timer.epoch_times) == 1 and np.isfinite(timer.logs[-1]['loss'])
  assert model.outputs[0].dtype == 'float32'
  assert model.dtype_policy.name == precision


def test_transfer_model_trains_head_then_fine_tunes():
  config = TrainingConfig(model='mobilenet', weights='none', alpha=0.25, image_size=32,
                          fine_tune_layers='10', head_epochs=1, epochs=1, batch_size=16)
  model = trainer.build(config, 5, 32)
  backbone = model.get_layer(models.BACKBONE_NAME)
  before = [w.numpy().copy() for w in backbone.weights]
  train, evaluation = _data()
  timer = trainer.train(config, model, train, evaluation, steps_per_epoch=2, validation_steps=4)
  assert len(timer.epoch_times) == 2  # one head epoch, one fine-tuning epoch
  changed = [not np.array_equal(b, w.numpy()) for b, w in zip(before, backbone.weights)]
  assert any(changed) and not all(changed)  # the top layers moved, the rest stayed frozen


@pytest.mark.parametrize('change,message', [
    (dict(model='resnet18'), "Unknown model 'resnet18'"),
    (dict(model='vgg16', image_size=16), 'at least 32x32'),
    (dict(model='mobilenet', weights='/nonexistent.h5'), 'Weights file not found'),
    (dict(model='mobilenet', weights='none', alpha=0.25, fine_tune_layers='500'),
     'exceeds the depth'),
    (dict(batch_size=0), 'batch_size'),
    (dict(learning_rate=50.0), 'learning_rate'),
    (dict(model='mobilenet', weights='none', fine_tune_layers='some'),
     "--fine-tune-layers 'some'"),
    (dict(tta='mirror'), "Unknown test-time augmentation 'mirror'"),
    (dict(precision='float16'), "Unknown precision 'float16'"),
    (dict(width=48), "Model 'simple_cnn' does not take width"),
    (dict(model='resnet', width=1), '--width 1: the resnet needs a whole number of 2 or more'),
    (dict(cutout=-1), '--cutout -1: must be 0 .* up to the stored image side, 32'),
    (dict(cutout=33), '--cutout 33: must be 0'),
])
def test_bad_training_settings_fail_before_training(change, message):
  config = dataclasses.replace(TrainingConfig(model='simple_cnn'), **change)
  with pytest.raises(UserError, match=message):
    trainer.check_training_config(config, 5, 32)


def test_width_reaches_the_resnet():
  model = trainer.build(TrainingConfig(model='resnet', width=8), 5, 32)
  assert [l.filters for l in model.layers if isinstance(l, keras.layers.Conv2D)][:2] == [4, 8]


def test_imagenet_weights_that_cannot_be_fetched_fail_before_training(tmp_path, monkeypatch):
  """No internet, arranged: an empty Keras cache and the weights URL on a closed local port
  (the discard port, 9), so the result does not depend on this machine's network or cache."""
  from keras.src.applications import mobilenet  # pylint: disable=g-import-not-at-top
  from keras.src.backend import config as keras_config  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(keras_config, '_KERAS_DIR', str(tmp_path / 'keras'))
  monkeypatch.setattr(mobilenet, 'BASE_WEIGHT_PATH', 'http://127.0.0.1:9/weights/')
  config = TrainingConfig(model='mobilenet', weights='imagenet')
  with pytest.raises(UserError, match=r"cannot build 'mobilenet' with --weights imagenet: .*"
                     r'\(offline\? pass --weights PATH'):
    trainer.check_training_config(config, 5, 32)
  assert not list((tmp_path / 'keras').rglob('*.h5'))  # nothing was downloaded


@pytest.mark.parametrize('model,optimizer,learning_rate', [
    ('resnet', 'muon', 0.1), ('airbench', 'muon', 0.1), ('simple_cnn', 'adam', 1e-3),
    ('mobilenet', 'adam', 1e-3)])
def test_unset_optimizer_and_learning_rate_are_the_models(model, optimizer, learning_rate):
  config = trainer.with_model_defaults(TrainingConfig(model=model))
  assert (config.optimizer, config.learning_rate) == (optimizer, learning_rate)


def test_explicit_optimizer_and_learning_rate_win_over_the_models():
  config = trainer.with_model_defaults(
      TrainingConfig(model='resnet', optimizer='adam', learning_rate=0.0))
  assert (config.optimizer, config.learning_rate) == ('adam', 0.0)


def test_training_whitens_airbench_on_the_first_training_images(monkeypatch):
  """`train` sets airbench's whitening from the first ADAPT_IMAGES training images before the first
  step; the filters then stay frozen while the rest of the network trains."""
  monkeypatch.setattr(trainer, 'ADAPT_IMAGES', 32)
  pixels = (128 + 40 * fixtures.correlated_images(seed=0)).astype(np.float32)
  labels = np.random.default_rng(0).integers(0, 5, 64)
  train = tf.data.Dataset.from_tensor_slices((pixels, labels)).batch(16)
  config = TrainingConfig(model='airbench', width=4, image_size=12, epochs=1, batch_size=16)
  model = trainer.build(config, 5, 12)
  whitening = model.get_layer('whitening')
  trainer.train(config, model, train.repeat(), train, steps_per_epoch=2, validation_steps=4)
  first = pixels[:32] / 255  # the ADAPT_IMAGES first images, as the layer sees them
  responses = fixtures.patches_2x2(first) @ whitening.kernel.numpy().reshape(12, 24)
  # Uncorrelated, of variances L / (L + epsilon) for the patches' covariance eigenvalues L.
  np.testing.assert_allclose(np.cov(responses, rowvar=False)[:12, :12],
                             np.diag(fixtures.whitened_variances(first)), atol=1e-3)
  assert [w.name for w in whitening.trainable_weights] == ['bias']
