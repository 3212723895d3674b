"""preprocessing_fn on real-format examples; each normalisation equals Keras' preprocess_input."""
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


def test_preprocessing_fn_decodes_the_png_bytes_of_examples():
  images = fixtures.class_images(np.array([3, 7, 11]), seed=4)
  pngs = encoding.encode_pngs(images)
  inputs = {constants.IMAGE_KEY: tf.constant([[p] for p in pngs]),  # [B, 1], as SchemaGen's shape
            constants.LABEL_KEY: tf.constant([[2], [0], [1]], tf.int64)}
  outputs = transform.preprocessing_fn(inputs, {transform.PREPROCESSING: 'unit',
                                                constants.STORED_IMAGE_SIZE: 32})
  np.testing.assert_allclose(outputs[constants.IMAGE_XF_KEY].numpy(), images / 255.0, atol=1e-6)
  np.testing.assert_array_equal(outputs[constants.LABEL_XF_KEY].numpy(), [2, 0, 1])


def test_preprocessing_fn_refuses_images_of_another_size():
  pngs = encoding.encode_pngs(np.zeros((1, 16, 16, 3), np.uint8))
  with pytest.raises(tf.errors.InvalidArgumentError):
    transform.preprocessing_fn({constants.IMAGE_KEY: tf.constant([pngs]),
                                constants.LABEL_KEY: tf.constant([[0]], tf.int64)},
                               {transform.PREPROCESSING: 'unit', constants.STORED_IMAGE_SIZE: 32})
