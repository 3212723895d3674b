"""preprocessing_fn on real-format examples; each normalisation equals Keras' preprocess_input,
and the model's first layer computes it from Transform's pixels as Transform used to."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from datasources import encoding
from modules import models
from modules import transform
from base import constants
from tests import fixtures

PREPROCESS_INPUT = {
    'tf': keras.applications.mobilenet.preprocess_input,
    'caffe': keras.applications.vgg16.preprocess_input,
    'torch': keras.applications.densenet.preprocess_input,
    'raw': keras.applications.efficientnet.preprocess_input,
}


@pytest.mark.parametrize('mode', sorted(PREPROCESS_INPUT))
def test_normalize_equals_keras_preprocess_input(mode):
  images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
  expected = PREPROCESS_INPUT[mode](images.copy())
  np.testing.assert_allclose(transform.normalize(tf.constant(images), mode).numpy(), expected,
                             rtol=1e-5, atol=1e-4)


def test_every_model_has_a_known_mode():
  for name, spec in models.MODELS.items():
    transform.normalize(tf.zeros([1, 2, 2, 3]), spec.preprocessing)  # raises if unknown


def test_unit_mode_and_unknown_mode():
  np.testing.assert_allclose(transform.normalize(tf.constant([[255.0, 0.0, 51.0]]), 'unit'),
                             [[1.0, 0.0, 0.2]])
  with pytest.raises(ValueError, match='unknown preprocessing mode'):
    transform.normalize(tf.zeros([1]), 'imagenet')


def test_preprocessing_fn_decodes_the_png_bytes_of_examples_to_pixels():
  images = fixtures.class_images(np.array([3, 7, 11]), seed=4)
  pngs = encoding.encode_pngs(images)
  inputs = {constants.IMAGE_KEY: tf.constant([[p] for p in pngs]),  # [B, 1], as SchemaGen's shape
            constants.LABEL_KEY: tf.constant([[2], [0], [1]], tf.int64)}
  outputs = transform.preprocessing_fn(inputs, {constants.STORED_IMAGE_SIZE: 32})
  assert outputs[constants.IMAGE_XF_KEY].dtype == tf.int64  # a tf.Example int64 feature
  np.testing.assert_array_equal(outputs[constants.IMAGE_XF_KEY].numpy(), images)
  np.testing.assert_array_equal(outputs[constants.LABEL_XF_KEY].numpy(), [2, 0, 1])


# Each mode's formula on pixels p in [0, 255], written out here (keras.applications' docs).
FORMULAS = {
    'unit': lambda p: p / 255,
    'tf': lambda p: p / 127.5 - 1,
    'caffe': lambda p: p[..., ::-1] - [103.939, 116.779, 123.68],
    'torch': lambda p: (p / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225],
    'raw': lambda p: p,
}


@pytest.mark.parametrize('mode', sorted(FORMULAS))
def test_normalize_pixels_of_any_integer_dtype_equals_the_old_float_path(mode):
  pixels = np.arange(256 * 3, dtype=np.int64).reshape(1, 16, 16, 3) % 256  # every value
  expected = FORMULAS[mode](pixels.astype(np.float64))
  old = transform.normalize(tf.constant(pixels, tf.float32), mode)  # Transform's former output
  for dtype in (tf.uint8, tf.int64, tf.float32):  # the cache's, Transform's, the Trainer's batches
    new = transform.normalize_pixels(tf.constant(pixels, dtype), mode)
    assert new.dtype == tf.float32
    np.testing.assert_array_equal(new.numpy(), old.numpy())
  np.testing.assert_allclose(old.numpy(), expected, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize('mode', sorted(FORMULAS))
def test_the_models_first_layer_normalizes_like_the_formula(mode):
  pixels = np.random.default_rng(1).integers(0, 256, (2, 4, 4, 3))
  layer = models.Normalize(mode)
  np.testing.assert_allclose(layer(tf.constant(pixels, tf.float32)).numpy(),
                             FORMULAS[mode](pixels.astype(np.float64)), rtol=1e-6, atol=1e-5)
  assert models.Normalize.from_config(layer.get_config()).mode == mode
  with pytest.raises(ValueError, match='unknown preprocessing mode'):
    models.Normalize('imagenet')


def test_a_model_on_pixels_gives_what_it_gave_on_transforms_former_output(tmp_path):
  """Same weights, same image: the model fed Transform's pixels (int64, as the serving signature
  feeds it, or the Trainer's float batches) equals its layers after `normalize` fed the normalized
  float32 images Transform materialised before; also after a save and load of model.keras."""
  keras.utils.set_random_seed(0)
  # A small builder with caffe's normalization (vgg16's): channel order and per-channel means.
  model = models.simple_cnn((32, 32, 3), 5, preprocessing='caffe')
  pixels = fixtures.class_images(np.array([0, 1, 2, 3]), seed=2).astype(np.int64)
  former_input = transform.normalize(tf.constant(pixels, tf.float32), 'caffe')
  after_normalize = keras.Model(model.get_layer('normalize').output, model.output)
  expected = after_normalize(former_input).numpy()
  np.testing.assert_allclose(model(tf.constant(pixels)).numpy(), expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(model(tf.constant(pixels, tf.float32)).numpy(), expected,
                             rtol=1e-5, atol=1e-5)
  path = os.path.join(tmp_path, 'model.keras')
  model.save(path)
  loaded = keras.models.load_model(path, compile=False)
  np.testing.assert_allclose(loaded(tf.constant(pixels, tf.float32)).numpy(), expected,
                             rtol=1e-5, atol=1e-5)


def test_preprocessing_fn_refuses_images_of_another_size():
  pngs = encoding.encode_pngs(np.zeros((1, 16, 16, 3), np.uint8))
  with pytest.raises(tf.errors.InvalidArgumentError):
    transform.preprocessing_fn({constants.IMAGE_KEY: tf.constant([pngs]),
                                constants.LABEL_KEY: tf.constant([[0]], tf.int64)},
                               {constants.STORED_IMAGE_SIZE: 32})
