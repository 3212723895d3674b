"""The input pipeline shared by Trainer and Tuner: raw examples -> (images, labels) batches.

The Trainer and the Tuner read ExampleGen's raw examples (PNG bytes) and apply Transform's graph
here, in tf.data (`raw_examples`): Transform writes only that graph and never materialises the
transformed splits, so data preparation has no Beam pass over the pixels (docs/benchmarks.md,
data preparation). The model still gets exactly what the transform graph computes, the graph
every serving signature runs too.

Transformed images are small (stored size, pixels in [0, 255]), so the transformed split is cached
in memory as uint8 (3 KB per 32x32 image) after the first pass when it fits the budget below: each
PNG is decoded once per process, and later
epochs then run at the speed of an in-memory numpy pipeline (benchmarks/input_pipeline.py
measures it). Batches leave as float32 pixels in [0, 255]: the model normalizes them in its first
layer (modules/models.py), as it does at serving time.
"""
from typing import Any, Callable, Dict, List, NamedTuple, Optional

import tensorflow as tf

from modules import augmentation
from base import constants

CACHE_BUDGET_BYTES = 6 * 2**30  # cache a parsed split in memory up to this size
_PARSE_BATCH = 512
_SHUFFLE_BUFFER = 20_000


def _files(patterns: List[str]) -> List[str]:
  files = sorted(f for pattern in patterns for f in tf.io.gfile.glob(pattern))
  if not files:
    raise ValueError(f'no files match {patterns}')
  return files


def _records(patterns: List[str]) -> tf.data.Dataset:
  return tf.data.TFRecordDataset(_files(patterns), compression_type='GZIP',
                                 num_parallel_reads=tf.data.AUTOTUNE)


def count_examples(patterns: List[str]) -> int:
  """Number of records in gzipped TFRecord files (one fast pass, no parsing)."""
  return int(_records(patterns).reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


class RawExamples(NamedTuple):
  """How to read raw examples: what to parse of them, and the transform graph to apply."""
  feature_spec: Dict[str, Any]  # the raw features preprocessing_fn reads
  transform: Callable[[Dict[str, tf.Tensor]], Dict[str, tf.Tensor]]


def raw_examples(tf_transform_output) -> RawExamples:
  """ExampleGen's examples through Transform's graph (a `tft.TFTransformOutput`): only the image
  and the label are parsed (the graph supplies its other inputs, as at serving time)."""
  spec = tf_transform_output.raw_feature_spec()
  return RawExamples({key: spec[key] for key in (constants.IMAGE_KEY, constants.LABEL_KEY)},
                     tf_transform_output.transform_features_layer())


def make_dataset(patterns: List[str], transformed_feature_spec: Dict[str, Any],
                 batch_size: int, training_split: bool, num_examples: int,
                 augment: str = 'none', seed: Optional[int] = None,
                 raw: Optional[RawExamples] = None, cutout: int = 0) -> tf.data.Dataset:
  """(images [B, S, S, 3] float32 pixels in [0, 255], labels [B] int64) batches.

  With `raw`, the records are raw examples, parsed with its spec and transformed by its graph (the
  pipeline's way); without, they are transformed examples as Transform materialises them (int64
  pixels; a float32 image feature passes unchanged).

  The train split is shuffled, repeated forever (pass `steps_per_epoch`) and augmented on the fly;
  augmentation runs here in tf.data and not in Transform so that Transform's output stays
  deterministic and cacheable while every epoch sees new variations. Other splits are read once,
  in order, with a final partial batch.
  """
  spec = transformed_feature_spec  # TFTransformOutput.transformed_feature_spec()
  image_spec = spec[constants.IMAGE_XF_KEY]
  feature_spec = {constants.IMAGE_XF_KEY: image_spec, constants.LABEL_XF_KEY: spec[constants.LABEL_XF_KEY]}

  # Integer pixels are cached as uint8, a quarter of float32's memory.
  cache_dtype = tf.uint8 if image_spec.dtype.is_integer else tf.float32

  def parse(serialized):
    if raw is None:
      features = tf.io.parse_example(serialized, feature_spec)
    else:
      features = raw.transform(tf.io.parse_example(serialized, raw.feature_spec))
    return (tf.cast(features[constants.IMAGE_XF_KEY], cache_dtype),
            tf.reshape(features[constants.LABEL_XF_KEY], [-1]))

  dataset = _records(patterns).batch(_PARSE_BATCH).map(
      parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()
  example_bytes = cache_dtype.size * int(tf.TensorShape(image_spec.shape).num_elements())
  if num_examples * example_bytes <= CACHE_BUDGET_BYTES:
    dataset = dataset.cache()
  if training_split:
    dataset = dataset.shuffle(min(num_examples, _SHUFFLE_BUFFER), seed=seed,
                              reshuffle_each_iteration=True).repeat()
  dataset = dataset.batch(batch_size, drop_remainder=training_split).map(
      lambda images, labels: (tf.cast(images, tf.float32), labels),
      num_parallel_calls=tf.data.AUTOTUNE)
  if training_split:
    dataset = augmentation.augment_dataset(dataset, augment, image_spec.shape[:2], cutout)
  return dataset.prefetch(tf.data.AUTOTUNE)
