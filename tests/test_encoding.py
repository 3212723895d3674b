"""The hand-written PNG and tf.Example bytes equal what PIL and TensorFlow read and write."""
import io

import numpy as np
import tensorflow as tf
from PIL import Image

from components.example_gen import encoding
from pipeline import constants
from tests import fixtures


def test_pngs_decode_to_the_same_pixels():
  images = fixtures.class_images(np.arange(6), seed=1)
  for png, image in zip(encoding.encode_pngs(images), images):
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), image)
    np.testing.assert_array_equal(tf.io.decode_png(png).numpy(), image)


def test_non_square_pngs():
  images = np.random.default_rng(0).integers(0, 256, (2, 20, 48, 3), dtype=np.uint8)
  for png, image in zip(encoding.encode_pngs(images), images):
    np.testing.assert_array_equal(tf.io.decode_png(png).numpy(), image)


def test_examples_equal_tensorflows_deterministic_serialization():
  encoder = encoding.ExampleEncoder(['apple', 'maple_tree'], [0, 47], ['fruit', 'trees'])
  png = encoding.encode_pngs(fixtures.class_images(np.array([47]), seed=2))[0]
  serialized = encoder.encode(png, 47)
  expected = tf.train.Example(features=tf.train.Features(feature={
      constants.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
      constants.LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[1])),
      constants.LABEL_NAME_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b'maple_tree'])),
      constants.FINE_LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[47])),
      constants.COARSE_LABEL_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b'trees'])),
  }))
  assert serialized == expected.SerializeToString(deterministic=True)


def test_large_varints():
  encoder = encoding.ExampleEncoder(['a'], [300], ['b'])
  example = tf.train.Example.FromString(encoder.encode(b'x' * 70000, 300))
  assert example.features.feature[constants.FINE_LABEL_KEY].int64_list.value == [300]
  assert len(example.features.feature[constants.IMAGE_KEY].bytes_list.value[0]) == 70000
