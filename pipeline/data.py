"""The data edge: find (or download) the images, check them, pick the team's classes.

Runs in the runner before the pipeline is built, so that every bad input is reported as one line
before any component starts, and so that no Beam executor touches the network.
"""
import collections
import dataclasses
import os
import shutil
import tempfile
import urllib.request
from typing import Dict, Optional, Tuple

import numpy as np

from datasources import sources
from datasources import classes as class_selection
from base import constants
from base.configs import COURSE_CLASS_COUNTS, DataConfig
from base.errors import UserError

CIFAR100_URL = 'https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz'
_DEFAULT_CIFAR_CLASSES = 20  # --num-classes default for CIFAR-100 (image folders: all classes)


def keras_datasets_dir() -> str:
  """Keras' dataset cache: $KERAS_HOME/datasets, else ~/.keras/datasets (as keras.utils.get_file)."""
  home = os.environ.get('KERAS_HOME') or os.path.join(os.path.expanduser('~'), '.keras')
  return os.path.join(home, 'datasets')


def find_keras_cache(datasets_dir: str) -> Optional[Tuple[str, str]]:
  """(source, path) of CIFAR-100 in Keras' cache: the archive or an extracted folder, if present."""
  candidates = [
      (constants.SOURCE_CIFAR_ARCHIVE, sources.CIFAR100_ARCHIVE_NAME),
      (constants.SOURCE_CIFAR_FOLDER, sources.CIFAR100_FOLDER_NAME),  # tf.keras' extraction
      (constants.SOURCE_CIFAR_FOLDER, os.path.join('cifar-100-python-target', 'cifar-100-python')),
  ]
  for source, name in candidates:
    path = os.path.join(datasets_dir, name)
    if os.path.isfile(path) if source == constants.SOURCE_CIFAR_ARCHIVE else os.path.isdir(path):
      return source, path
  return None


def download(url: str, target: str) -> None:
  """Downloads to `target` through a temporary file, so a broken download leaves nothing behind."""
  os.makedirs(os.path.dirname(target), exist_ok=True)
  print(f'Downloading {url} to {target} ...', flush=True)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), suffix='.part')
  try:
    with os.fdopen(fd, 'wb') as out, urllib.request.urlopen(url, timeout=60) as response:
      total = int(response.headers.get('Content-Length') or 0)
      done, next_report = 0, 0.1
      for chunk in iter(lambda: response.read(1 << 20), b''):
        out.write(chunk)
        done += len(chunk)
        if total and done / total >= next_report:
          print(f'  {done / total:4.0%} of {total / 2**20:.0f} MiB', flush=True)
          next_report += 0.1
    os.replace(tmp, target)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def locate_source(data: Optional[str]) -> Tuple[str, str]:
  """(source kind, path) for --data, or Keras' cache (downloading CIFAR-100 when absent)."""
  if data is None:
    datasets_dir = keras_datasets_dir()
    found = find_keras_cache(datasets_dir)
    if found:
      return found
    target = os.path.join(datasets_dir, sources.CIFAR100_ARCHIVE_NAME)
    url = os.environ.get('CIFAR100_URL', CIFAR100_URL)
    try:
      download(url, target)
    except OSError as e:  # URLError, timeouts, disk errors
      raise UserError(f'CIFAR-100 is not in Keras\' cache and the download from {url} failed '
                      f'({getattr(e, "reason", e)}): put cifar-100-python.tar.gz at {target} '
                      'or pass --data PATH') from e
    return constants.SOURCE_CIFAR_ARCHIVE, target
  path = os.path.abspath(os.path.expanduser(data))
  if os.path.isfile(path):
    if path.endswith(('.tar.gz', '.tgz')):
      return constants.SOURCE_CIFAR_ARCHIVE, path
    raise UserError(f'--data {data}: expected cifar-100-python.tar.gz, its extracted folder, '
                    'or an image folder with train/<class>/ folders')
  if not os.path.isdir(path):
    raise UserError(f'--data {data}: no such file or folder')
  if os.path.isdir(os.path.join(path, sources.CIFAR100_FOLDER_NAME)):
    path = os.path.join(path, sources.CIFAR100_FOLDER_NAME)
  if os.path.isfile(os.path.join(path, 'meta')) and os.path.isfile(os.path.join(path, 'train')):
    return constants.SOURCE_CIFAR_FOLDER, path
  if os.path.isdir(os.path.join(path, constants.TRAIN_SPLIT)):
    return constants.SOURCE_IMAGE_FOLDER, path
  raise UserError(f'--data {data}: neither a cifar-100-python/ folder (meta, train, test) nor an '
                  'image folder (train/<class>/*.png|jpg)')


def read_class_table(location: str) -> str:
  """The text of a class table from a local CSV path or an http(s) URL."""
  if location.startswith(('http://', 'https://')):
    try:
      with urllib.request.urlopen(location, timeout=30) as response:
        return response.read().decode('utf-8')
    except OSError as e:
      raise UserError(f'--class-table {location}: cannot fetch it ({getattr(e, "reason", e)}); '
                      'save it as a CSV file and pass its path') from e
  try:
    with open(os.path.expanduser(location), encoding='utf-8') as f:
      return f.read()
  except OSError as e:
    raise UserError(f'--class-table {location}: {e.strerror}') from e


def select_ids(config: DataConfig, names: Tuple[str, ...], default_count: int) -> Tuple[int, ...]:
  """The team's class ids: explicit list, else class table row, else the seed rule."""
  if config.classes:
    return class_selection.classes_from_list(config.classes, names)
  num_classes = config.num_classes or default_count
  if config.class_table:
    rows = class_selection.parse_class_table(read_class_table(config.class_table),
                                             config.class_table)
    return class_selection.row_from_table(rows, config.team_seed, num_classes, len(names),
                                          f'class table {config.class_table}')
  return class_selection.classes_by_rule(config.team_seed, num_classes, len(names))


def _check_fractions(config: DataConfig) -> None:
  if not 0 < config.eval_fraction < 1:
    raise UserError(f'--eval-fraction {config.eval_fraction}: must be between 0 and 1')
  if not 0 < config.test_fraction < 1:
    raise UserError(f'--test-fraction {config.test_fraction}: must be between 0 and 1')
  if config.beam_workers < 0:
    raise UserError(f'--beam-workers {config.beam_workers}: must be 0 or more')


def resolve_data(config: DataConfig) -> Tuple[DataConfig, Dict[str, int]]:
  """Checks the source and picks the classes; returns the resolved config and split sizes."""
  _check_fractions(config)
  source, path = locate_source(config.data)
  if source == constants.SOURCE_IMAGE_FOLDER:
    scan = sources.scan_image_folder(path)
    if scan.skipped:
      print(f'Warning: skipped {scan.skipped} file(s) under {path} that are hidden or not '
            f'{"/".join(constants.IMAGE_EXTENSIONS)} images', flush=True)
    height, width = scan.image_size
    if height != width:
      raise UserError(f'{path}: images are {width}x{height}; the pipeline needs square images '
                      '(crop or pad them to one square size first)')
    stored_size = height
    ids = select_ids(config, scan.class_names, len(scan.class_names))
    names = tuple(scan.class_names[i] for i in ids)
    coarse = names
    train_counts = [len(scan.train_files[n]) for n in names]
    if scan.test_files is None:
      test_counts = [len(sources.tail_holdout(scan.train_files[n], config.test_fraction)[1])
                     for n in names]
      train_counts = [t - s for t, s in zip(train_counts, test_counts)]
    else:
      missing = [n for n in names if n not in scan.test_files]
      if missing:
        raise UserError(f'{os.path.join(path, constants.TEST_SPLIT)}: no test images for '
                        f'classes {missing}; add test/<class>/ folders for them, or remove test/ '
                        'to hold out the last --test-fraction of each class')
      test_counts = [len(scan.test_files[n]) for n in names]
    note = conversion_note(scan, names)
    if note:
      print(note, flush=True)
  else:
    stored_size = sources.CIFAR_IMAGE_SHAPE[0]
    if source == constants.SOURCE_CIFAR_ARCHIVE:
      sources.check_archive_md5(path, config.trust_data)
    cifar = sources.read_cifar(source, path)
    meta = cifar.meta
    if config.num_classes and not config.classes and not config.class_table and (
        config.num_classes not in COURSE_CLASS_COUNTS):
      print(f'Note: the course uses {COURSE_CLASS_COUNTS} classes; using {config.num_classes}.')
    ids = select_ids(config, meta.fine_names, _DEFAULT_CIFAR_CLASSES)
    train, test = cifar.train, cifar.test
    names = tuple(meta.fine_names[i] for i in ids)
    coarse = tuple(_coarse_name(train, meta, i) for i in ids)
    train_counts = [int(np.sum(train.fine_labels == i)) for i in ids]
    test_counts = [int(np.sum(test.fine_labels == i)) for i in ids]
    empty = [n for n, c in zip(names, train_counts) if c == 0]
    if empty:
      raise UserError(f'{path}: classes {empty} have no training images')
  eval_counts = [sources.holdout_count(c, config.eval_fraction) for c in train_counts]
  sizes = {
      constants.TRAIN_SPLIT: sum(train_counts) - sum(eval_counts),
      constants.EVAL_SPLIT: sum(eval_counts),
      constants.TEST_SPLIT: sum(test_counts),
  }
  resolved = dataclasses.replace(
      config, num_classes=len(ids), source=source, source_path=path, class_names=names,
      fine_label_ids=tuple(int(i) for i in ids), coarse_names=coarse,
      stored_image_size=stored_size)
  return resolved, sizes


# How the note describes each `sources.read_image` conversion (the alpha background is
# `sources.ALPHA_BACKGROUND`).
_CONVERSION_WORDS = {
    'alpha': 'with transparency (composited onto white)',
    '16-bit': '16-bit RGB (high byte kept)',
    '16-bit grey': '16-bit grey (scaled to 8 bits)',
}


def conversion_note(scan: sources.FolderScan, names: Tuple[str, ...]) -> Optional[str]:
  """One console line counting the team's images that are converted to 8-bit RGB on the way in
  (`sources.read_image`), by kind; None when there are none."""
  files = [f for split in (scan.train_files, scan.test_files or {}) for n in names
           for f in split.get(n, [])]
  counts = collections.Counter(scan.converted[f] for f in files if f in scan.converted)
  if not counts:
    return None
  kinds = ', '.join(f'{count:,} {_CONVERSION_WORDS.get(kind, kind)}'
                    for kind, count in sorted(counts.items()))
  return f'Note: converting {sum(counts.values()):,} of {len(files):,} images to 8-bit RGB: {kinds}'


def _coarse_name(split: sources.CifarSplit, meta: sources.CifarMeta, fine_id: int) -> str:
  coarse_ids = np.unique(split.coarse_labels[split.fine_labels == fine_id])
  if len(coarse_ids) != 1 or not 0 <= coarse_ids[0] < len(meta.coarse_names):
    raise UserError(f'class {meta.fine_names[fine_id]!r}: inconsistent superclass labels')
  return meta.coarse_names[int(coarse_ids[0])]
