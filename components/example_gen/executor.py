"""Beam executor of the CIFAR-100 ExampleGen: the team's classes as tf.Examples in three splits."""
import json
import os
from typing import Any, Dict, List, Sequence, Tuple

import apache_beam as beam
import numpy as np
from absl import logging
from tfx.components.example_gen import base_example_gen_executor

from components.example_gen import encoding, sources
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


def _encoder(props: Dict[str, Any]) -> encoding.ExampleEncoder:
  return encoding.ExampleEncoder(
      json.loads(props[CLASS_NAMES]), json.loads(props[SOURCE_IDS]),
      json.loads(props[COARSE_NAMES]))


def _chunks(items: Sequence, size: int = _CHUNK) -> List[list]:
  return [list(items[i:i + size]) for i in range(0, len(items), size)]


def plan_cifar(props: Dict[str, Any], work_dir: str) -> Dict[str, List[tuple]]:
  """Per split, the (images .npy, indices, source ids) elements to encode.

  The pickles are read once, here; their pixels go to uncompressed .npy files in `work_dir`
  that every Beam worker memory-maps, instead of each decompressing the archive again.
  """
  source, path = props[SOURCE], props[SOURCE_PATH]
  if source == constants.SOURCE_CIFAR_ARCHIVE:
    sources.check_archive_md5(path, bool(props[TRUST_DATA]))
  ids = json.loads(props[SOURCE_IDS])
  _, train, test = sources.read_cifar(source, path)
  selected = np.flatnonzero(np.isin(train.fine_labels, ids))
  held_out = sources.stratified_holdout(train.fine_labels[selected], props[EVAL_FRACTION],
                                        props[SPLIT_SEED])
  test_selected = np.flatnonzero(np.isin(test.fine_labels, ids))
  plan = {}
  for split, member, indices in ((constants.TRAIN_SPLIT, train, selected[~held_out]),
                                 (constants.EVAL_SPLIT, train, selected[held_out]),
                                 (constants.TEST_SPLIT, test, test_selected)):
    npy_path = os.path.join(work_dir, ('test' if member is test else 'train') + '_images.npy')
    if not os.path.exists(npy_path):
      np.save(npy_path, member.images)
    plan[split] = [(npy_path, [int(i) for i in chunk], [int(member.fine_labels[i]) for i in chunk])
                   for chunk in _chunks(indices)]
  return plan


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
      encode = encoding.EncodeFileChunk(_encoder(props), image_size)
    elif props[SOURCE] in (constants.SOURCE_CIFAR_ARCHIVE, constants.SOURCE_CIFAR_FOLDER):
      plan = plan_cifar(props, self._get_tmp_dir())
      encode = encoding.EncodeArrayChunk(_encoder(props))
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
