"""The hand-written PNG, tf.Example and gzipped TFRecord bytes are what PIL and TensorFlow read
and write."""
import io

import numpy as np
import tensorflow as tf
from PIL import Image

from datasources import encoding
from base import constants
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


def test_examples_of_many_images_and_classes():
  """The per-class templates give TensorFlow's bytes for every image, not just the first."""
  names, ids, coarse = ['apple', 'maple_tree', 'x' * 200], [0, 47, 99], ['fruit', 'trees', 'y']
  encoder = encoding.ExampleEncoder(names, ids, coarse)
  images = np.random.default_rng(3).integers(0, 256, (9, 32, 32, 3), dtype=np.uint8)
  for n, png in enumerate(encoding.encode_pngs(images)):
    label = n % 3
    expected = tf.train.Example(features=tf.train.Features(feature={
        constants.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
        constants.LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        constants.LABEL_NAME_KEY: tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[names[label].encode()])),
        constants.FINE_LABEL_KEY: tf.train.Feature(
            int64_list=tf.train.Int64List(value=[ids[label]])),
        constants.COARSE_LABEL_KEY: tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[coarse[label].encode()])),
    }))
    assert encoder.encode(png, ids[label]) == expected.SerializeToString(deterministic=True)


def test_tfrecord_gz_files_read_back_with_tensorflow(tmp_path):
  records = [b'', b'x', bytes(range(256)) * 300] + encoding.encode_pngs(
      fixtures.class_images(np.arange(5), seed=4))
  path = str(tmp_path / 'data_tfrecord-00000-of-00001.gz')
  encoding.write_tfrecord_gz(path, records)
  assert [r.numpy() for r in tf.data.TFRecordDataset([path], compression_type='GZIP')] == records
  encoding.write_tfrecord_gz(path + '2', records)
  assert open(path, 'rb').read() == open(path + '2', 'rb').read()  # no name or time in the header


def test_shards_cover_every_image_once():
  from components.example_gen import executor  # pylint: disable=g-import-not-at-top
  assert executor.shard_bounds(0) == [(0, 0)]
  for count in (1, 2499, 2500, 2501, 42500):
    bounds = executor.shard_bounds(count)
    assert bounds[0][0] == 0 and bounds[-1][1] == count
    assert all(end == next_start for (_, end), (next_start, _) in zip(bounds, bounds[1:]))
    sizes = [end - start for start, end in bounds]
    assert max(sizes) <= executor.SHARD_SIZE and max(sizes) - min(sizes) <= 1
