"""The Trainer's input pipeline: raw examples through Transform's graph (the pipeline's way), and
transformed examples in Transform's materialised format (int64 pixels)."""
import os

import numpy as np
import tensorflow as tf

from datasources import encoding
from modules import inputs
from base import constants
from tests import fixtures

SPEC = {constants.IMAGE_XF_KEY: tf.io.FixedLenFeature([32, 32, 3], tf.int64),
        constants.LABEL_XF_KEY: tf.io.FixedLenFeature([], tf.int64)}


def _write(path, images, labels):
  """Gzipped TFRecords of tf.Examples as Transform materialises them."""
  with tf.io.TFRecordWriter(path, options='GZIP') as writer:
    for image, label in zip(images, labels):
      writer.write(tf.train.Example(features=tf.train.Features(feature={
          constants.IMAGE_XF_KEY: tf.train.Feature(
              int64_list=tf.train.Int64List(value=image.reshape(-1).astype(np.int64))),
          constants.LABEL_XF_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
      })).SerializeToString())


def test_eval_batches_are_the_pixels_as_float32_in_order(tmp_path):
  images = fixtures.class_images(np.arange(10) % 4, seed=3)
  images[0, 0, 0] = [0, 128, 255]  # both varint lengths and the extremes survive
  labels = np.arange(10) % 4
  path = os.path.join(tmp_path, 'eval.gz')
  _write(path, images, labels)
  assert inputs.count_examples([path]) == 10
  batches = list(inputs.make_dataset([path], SPEC, 4, False, 10))
  assert [len(b[1]) for b in batches] == [4, 4, 2]  # the final partial batch is kept
  assert all(b[0].dtype == tf.float32 for b in batches)
  np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), images)
  np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), labels)


def test_train_batches_are_full_shuffled_pixels(tmp_path):
  images = fixtures.class_images(np.arange(12) % 3, seed=5)
  path = os.path.join(tmp_path, 'train.gz')
  _write(path, images, np.arange(12))
  data = inputs.make_dataset([path], SPEC, 5, True, 12, seed=0)
  batch_images, batch_labels = next(iter(data.take(1)))
  assert batch_images.shape == (5, 32, 32, 3) and batch_images.dtype == tf.float32
  # Each image (not augmented: the default 'none') is the one its label indexes.
  np.testing.assert_array_equal(batch_images.numpy(), images[batch_labels.numpy()])


def test_cutout_cuts_train_batches_only(tmp_path):
  images = fixtures.class_images(np.arange(12) % 3, seed=5)
  path = os.path.join(tmp_path, 'split.gz')
  _write(path, images, np.arange(12))
  train_images, labels = next(iter(inputs.make_dataset([path], SPEC, 6, True, 12, seed=0,
                                                       cutout=6).take(1)))
  changed = (train_images.numpy() != images[labels.numpy()]).any(-1)  # [6, 32, 32]
  assert all(0 < count <= 36 for count in changed.sum((1, 2)))  # one square of up to 6x6 each
  eval_images = np.concatenate([b[0] for b in inputs.make_dataset([path], SPEC, 6, False, 12,
                                                                  cutout=6)])
  np.testing.assert_array_equal(eval_images, images)


def test_raw_examples_through_the_transform_graph_are_the_source_pixels(tmp_path):
  images = fixtures.class_images(np.arange(7) % 3, seed=8)
  images[0, 0, 0] = [0, 128, 255]
  labels = np.arange(7) % 3
  path = os.path.join(tmp_path, 'eval.gz')
  encoding.write_tfrecord_gz(path, [fixtures.raw_example(png, label) for png, label in
                                    zip(encoding.encode_pngs(images), labels)])
  tf_transform_output = fixtures.write_transform_graph(str(tmp_path / 'transform_graph'))
  raw = inputs.raw_examples(tf_transform_output)
  assert sorted(raw.feature_spec) == sorted([constants.IMAGE_KEY, constants.LABEL_KEY])
  spec = tf_transform_output.transformed_feature_spec()
  batches = list(inputs.make_dataset([path], spec, 3, False, 7, raw=raw))
  assert [len(b[1]) for b in batches] == [3, 3, 1]
  assert all(b[0].dtype == tf.float32 for b in batches)
  np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), images)
  np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), labels)
  # The training split: shuffled, and each image still the one its label indexes.
  path = os.path.join(tmp_path, 'train.gz')
  encoding.write_tfrecord_gz(path, [fixtures.raw_example(png, label) for png, label in
                                    zip(encoding.encode_pngs(images), range(7))])
  batch_images, batch_labels = next(iter(inputs.make_dataset([path], spec, 5, True, 7, seed=0,
                                                             raw=raw).take(1)))
  np.testing.assert_array_equal(batch_images.numpy(), images[batch_labels.numpy()])
