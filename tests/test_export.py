"""Tests of modules/export.py's prediction path: test-time augmentation."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from modules import export


def _model():
  """A model that is not mirror-symmetric, so the mirror image gets other logits."""
  keras.utils.set_random_seed(0)
  inputs = keras.Input((4, 4, 3))
  return keras.Model(inputs, keras.layers.Dense(5)(keras.layers.Flatten()(inputs)))


def test_without_tta_probabilities_are_the_softmax_of_the_logits():
  model, images = _model(), tf.random.uniform([6, 4, 4, 3])
  np.testing.assert_allclose(export.predict_probabilities(model, images, 'none'),
                             tf.nn.softmax(model(images)), atol=1e-6)


def test_flip_tta_averages_the_image_and_its_mirror():
  model, images = _model(), tf.random.uniform([6, 4, 4, 3])
  mirrored = images.numpy()[:, :, ::-1, :]  # NHWC: reverse the width axis
  expected = (tf.nn.softmax(model(images)) + tf.nn.softmax(model(mirrored))) / 2
  probabilities = export.predict_probabilities(model, images, 'flip')
  np.testing.assert_allclose(probabilities, expected, atol=1e-6)
  np.testing.assert_allclose(np.sum(probabilities, axis=1), 1.0, atol=1e-6)
  # ... and is symmetric: an image and its mirror get the same prediction.
  np.testing.assert_allclose(export.predict_probabilities(model, mirrored, 'flip'), probabilities,
                             atol=1e-6)
  assert not np.allclose(probabilities, export.predict_probabilities(model, images, 'none'))


def test_unknown_tta():
  with pytest.raises(ValueError, match="Unknown test-time augmentation 'rotate'; expected one of: "
                     'none, flip'):
    export.predict_probabilities(_model(), tf.zeros([1, 4, 4, 3]), 'rotate')
