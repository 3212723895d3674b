"""Beam executor of the CIFAR-100 ExampleGen: the team's classes as tf.Examples in three splits."""
import io
import json
from typing import Any, Dict, Iterable, List, Sequence, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image
from tfx.components.example_gen import base_example_gen_executor

from components.example_gen import sources
from pipeline import constants
from pipeline.errors import UserError

# Execution property names (the component spec declares them).
SOURCE = 'source'
SOURCE_PATH = 'source_path'
CLASS_NAMES = 'class_names'  # JSON list
SOURCE_IDS = 'source_ids'  # JSON list: CIFAR-100 fine label ids, or image folder class indices
COARSE_NAMES = 'coarse_names'  # JSON list
SPLIT_SEED = 'split_seed'
EVAL_FRACTION = 'eval_fraction'
TEST_FRACTION = 'test_fraction'
TRUST_DATA = 'trust_data'

_CHUNK = 500  # images per Beam element: large enough to amortise Beam's per-element cost

_CIFAR_CACHE: Dict[Tuple[str, str, str], sources.CifarSplit] = {}  # per worker process


def _cifar_split(source: str, path: str, member: str) -> sources.CifarSplit:
  key = (source, path, member)
  if key not in _CIFAR_CACHE:
    _CIFAR_CACHE[key] = sources.read_cifar_split(source, path, member)
  return _CIFAR_CACHE[key]


def encode_png(image: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='PNG', compress_level=1)
  return buffer.getvalue()


def make_example(image: np.ndarray, label: int, name: str, source_id: int, coarse: str) -> bytes:
  """A serialized tf.Example in the data contract's features."""
  feature = {
      constants.IMAGE_KEY: _bytes(encode_png(image)),
      constants.LABEL_KEY: _int(label),
      constants.LABEL_NAME_KEY: _bytes(name.encode('utf-8')),
      constants.FINE_LABEL_KEY: _int(source_id),
      constants.COARSE_LABEL_KEY: _bytes(coarse.encode('utf-8')),
  }
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(
      deterministic=True)


def _bytes(value: bytes) -> tf.train.Feature:
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value: int) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


class _Classes:
  """The team's classes: label = position; source id, name and superclass of each."""

  def __init__(self, exec_properties: Dict[str, Any]):
    self.names = json.loads(exec_properties[CLASS_NAMES])
    self.source_ids = json.loads(exec_properties[SOURCE_IDS])
    self.coarse = json.loads(exec_properties[COARSE_NAMES])
    self.label_of = {source_id: n for n, source_id in enumerate(self.source_ids)}

  def example(self, image: np.ndarray, source_id: int) -> bytes:
    label = self.label_of[source_id]
    return make_example(image, label, self.names[label], source_id, self.coarse[label])


class _EncodeCifarChunk(beam.DoFn):
  """(member, indices) -> serialized examples, reading the pickle once per worker process."""

  def __init__(self, exec_properties: Dict[str, Any]):
    self._props = exec_properties

  def setup(self):
    self._classes = _Classes(self._props)

  def process(self, element: Tuple[str, List[int]]) -> Iterable[bytes]:
    member, indices = element
    split = _cifar_split(self._props[SOURCE], self._props[SOURCE_PATH], member)
    for i in indices:
      yield self._classes.example(split.images[i], int(split.fine_labels[i]))


class _EncodeImageChunk(beam.DoFn):
  """[(path, source id)] -> serialized examples."""

  def __init__(self, exec_properties: Dict[str, Any], image_size: Tuple[int, int]):
    self._props = exec_properties
    self._image_size = image_size

  def setup(self):
    self._classes = _Classes(self._props)

  def process(self, element: List[Tuple[str, int]]) -> Iterable[bytes]:
    for path, source_id in element:
      yield self._classes.example(sources.load_image(path, self._image_size), source_id)


def _chunks(items: Sequence, size: int = _CHUNK) -> List[list]:
  return [list(items[i:i + size]) for i in range(0, len(items), size)]


def plan_cifar(props: Dict[str, Any]) -> Dict[str, List[Tuple[str, List[int]]]]:
  """Per split, the (pickle member, image indices) elements to encode."""
  source, path = props[SOURCE], props[SOURCE_PATH]
  if source == constants.SOURCE_CIFAR_ARCHIVE:
    sources.check_archive_md5(path, bool(props[TRUST_DATA]))
  ids = json.loads(props[SOURCE_IDS])
  train = _cifar_split(source, path, 'train')
  test = _cifar_split(source, path, 'test')
  selected = np.flatnonzero(np.isin(train.fine_labels, ids))
  held_out = sources.stratified_holdout(train.fine_labels[selected], props[EVAL_FRACTION],
                                        props[SPLIT_SEED])
  test_selected = np.flatnonzero(np.isin(test.fine_labels, ids))
  as_list = lambda a: [int(i) for i in a]
  return {
      constants.TRAIN_SPLIT: [('train', c) for c in _chunks(as_list(selected[~held_out]))],
      constants.EVAL_SPLIT: [('train', c) for c in _chunks(as_list(selected[held_out]))],
      constants.TEST_SPLIT: [('test', c) for c in _chunks(as_list(test_selected))],
  }


def plan_image_folder(props: Dict[str, Any]) -> Tuple[Dict[str, list], Tuple[int, int]]:
  """Per split, chunks of (path, class index) to encode, and the images' shared size."""
  scan = sources.scan_image_folder(props[SOURCE_PATH], check_sizes=False)
  names, ids = json.loads(props[CLASS_NAMES]), json.loads(props[SOURCE_IDS])
  train, test = [], []
  for name, source_id in zip(names, ids):
    files = scan.train_files[name]
    if scan.test_files is None:
      files, test_files = sources.tail_holdout(files, props[TEST_FRACTION])
    else:
      test_files = scan.test_files.get(name, [])
    train += [(f, source_id) for f in files]
    test += [(f, source_id) for f in test_files]
  held_out = sources.stratified_holdout([s for _, s in train], props[EVAL_FRACTION],
                                        props[SPLIT_SEED])
  plan = {
      constants.TRAIN_SPLIT: _chunks([t for t, h in zip(train, held_out) if not h]),
      constants.EVAL_SPLIT: _chunks([t for t, h in zip(train, held_out) if h]),
      constants.TEST_SPLIT: _chunks(test),
  }
  return plan, scan.image_size


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
  """Writes the team's classes as train/eval/test splits (custom, stratified splitting)."""

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    raise NotImplementedError('splits are made in GenerateExamplesByBeam')

  def GenerateExamplesByBeam(self, pipeline: beam.Pipeline,
                             exec_properties: Dict[str, Any]) -> Dict[str, beam.PCollection]:
    props = dict(exec_properties)
    if props[SOURCE] == constants.SOURCE_IMAGE_FOLDER:
      plan, image_size = plan_image_folder(props)
      encode = _EncodeImageChunk(props, image_size)
    elif props[SOURCE] in (constants.SOURCE_CIFAR_ARCHIVE, constants.SOURCE_CIFAR_FOLDER):
      plan = plan_cifar(props)
      encode = _EncodeCifarChunk(props)
    else:
      raise UserError(f'unknown source {props[SOURCE]!r}')
    splits = {}
    for split, elements in plan.items():
      logging.info('ExampleGen: split %s has %d images', split,
                   sum(len(e[1]) if isinstance(e, tuple) else len(e) for e in elements))
      splits[split] = (
          pipeline
          | f'Plan[{split}]' >> beam.Create(elements, reshuffle=False)
          # Spreads the chunks over the workers in multi_processing mode.
          | f'Spread[{split}]' >> beam.Reshuffle()
          | f'Encode[{split}]' >> beam.ParDo(encode))
    return splits
