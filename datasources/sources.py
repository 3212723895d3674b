"""Reading image sources: the CIFAR-100 python archive, its extracted folder, an image folder.

Pure functions (plus file reads): the runner's preflight and the ExampleGen executor both use them,
and tests call them directly.
"""
import hashlib
import os
import pickle
import tarfile
import zlib
from typing import BinaryIO, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, TypeVar

import numpy as np
from PIL import Image

from base import constants
from base.errors import UserError

CIFAR100_MD5 = 'eb9058c3a382ffc7106e4002c42a8d85'  # the official cifar-100-python.tar.gz
CIFAR100_ARCHIVE_NAME = 'cifar-100-python.tar.gz'
CIFAR100_FOLDER_NAME = 'cifar-100-python'
CIFAR_IMAGE_SHAPE = (32, 32, 3)
T = TypeVar('T')


def md5_of(path: str, chunk_size: int = 1 << 20) -> str:
  digest = hashlib.md5()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(chunk_size), b''):
      digest.update(chunk)
  return digest.hexdigest()


def check_archive_md5(path: str, trust_data: bool) -> None:
  """Refuses an archive that is not the official one, before anything in it is unpickled."""
  if trust_data:
    return
  actual = md5_of(path)
  if actual != CIFAR100_MD5:
    raise UserError(
        f'{path}: MD5 {actual} is not the official CIFAR-100 archive\'s {CIFAR100_MD5} '
        '(a truncated or different file); re-download it, or pass --trust-data if you made it')


class _SafeUnpickler(pickle.Unpickler):
  """Unpickles plain containers and numpy arrays only: a pickle can run code, this one cannot."""
  _ALLOWED = {
      ('numpy.core.multiarray', '_reconstruct'),
      ('numpy._core.multiarray', '_reconstruct'),
      ('numpy', 'ndarray'),
      ('numpy', 'dtype'),
      ('_codecs', 'encode'),  # bytes pickled by Python 3 with protocol 2
  }

  def find_class(self, module, name):
    if (module, name) in self._ALLOWED:
      return super().find_class(module, name)
    raise pickle.UnpicklingError(f'{module}.{name} is not allowed in a CIFAR-100 pickle')


# What reading a broken file raises (pickle raises EOFError too, for a truncated pickle).
_READ_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error)


def _unpickle(f: BinaryIO, what: str) -> Dict[str, object]:
  try:
    obj = _SafeUnpickler(f, encoding='bytes').load()
  except _READ_ERRORS:
    raise  # the file itself is broken: `_read_members` says so
  except Exception as e:  # pickle raises many types on corrupt input
    raise UserError(f'{what}: not a readable CIFAR-100 pickle ({type(e).__name__}: {e})') from e
  if not isinstance(obj, dict):
    raise UserError(f'{what}: expected a dict, found {type(obj).__name__}')
  return {(k.decode('latin1') if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _read_members(source: str, path: str,
                  parsers: Dict[str, Callable[[BinaryIO, str], T]]) -> Dict[str, T]:
  """parsers[member](file, what) of cifar-100-python/<member> for each member, in one pass over
  the archive. The pickles are parsed straight from the (decompressing) file: holding their
  bytes first cost ~290 MB more peak memory for the full archive."""
  found = {}
  broken = f'{path}: truncated or corrupt archive'
  try:
    if source == constants.SOURCE_CIFAR_FOLDER:
      for member, parse in parsers.items():
        file_path = os.path.join(path, member)
        if not os.path.isfile(file_path):
          raise UserError(
              f'{path}: no file {member!r} (expected the extracted cifar-100-python/ folder)')
        broken = f'{file_path}: truncated or corrupt file'
        with open(file_path, 'rb') as f:
          found[member] = parse(f, f'{path}: {member}')
      return found
    # Stream mode: one sequential pass decompressing 1 MiB at a time, ~10% faster than the
    # seekable mode's 8 KiB reads.
    with tarfile.open(path, 'r|gz', bufsize=1 << 20) as tar:
      for info in tar:
        name = os.path.basename(info.name)
        if (info.isfile() and name in parsers and
            os.path.basename(os.path.dirname(info.name)) == CIFAR100_FOLDER_NAME):
          found[name] = parsers[name](tar.extractfile(info), f'{path}: {name}')
          if len(found) == len(parsers):
            break
  except _READ_ERRORS as e:
    raise UserError(f'{broken} ({e})') from e
  missing = [m for m in parsers if m not in found]
  if missing:
    raise UserError(f'{path}: archive has no {CIFAR100_FOLDER_NAME}/{missing[0]}')
  return found


class CifarMeta(NamedTuple):
  fine_names: Tuple[str, ...]
  coarse_names: Tuple[str, ...]


class CifarSplit(NamedTuple):
  images: np.ndarray  # [N, 32, 32, 3] uint8
  fine_labels: np.ndarray  # [N] int64
  coarse_labels: np.ndarray  # [N] int64


def _names(values) -> Tuple[str, ...]:
  return tuple(v.decode('utf-8') if isinstance(v, bytes) else str(v) for v in values)


def parse_cifar_meta(f: BinaryIO, what: str) -> CifarMeta:
  meta = _unpickle(f, what)
  try:
    return CifarMeta(_names(meta['fine_label_names']), _names(meta['coarse_label_names']))
  except KeyError as e:
    raise UserError(f'{what} has no {e.args[0]!r}') from e


def parse_cifar_split(f: BinaryIO, what: str) -> CifarSplit:
  """One of the 'train'/'test' pickles as HWC uint8 images and int labels."""
  batch = _unpickle(f, what)
  try:
    data = np.asarray(batch['data'], dtype=np.uint8)
    fine = np.asarray(batch['fine_labels'], dtype=np.int64)
    coarse = np.asarray(batch['coarse_labels'], dtype=np.int64)
  except KeyError as e:
    raise UserError(f'{what} has no {e.args[0]!r}') from e
  if data.ndim != 2 or data.shape[1] != 3072 or not len(data) == len(fine) == len(coarse):
    raise UserError(f'{what}: expected data N x 3072 and N labels, found {data.shape}, '
                    f'{len(fine)} fine and {len(coarse)} coarse labels')
  # Rows are channel-major: 1024 red, then 1024 green, then 1024 blue values.
  images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # a view: no copy
  return CifarSplit(images, fine, coarse)


class CifarData(NamedTuple):
  meta: CifarMeta
  train: CifarSplit
  test: CifarSplit


def read_cifar(source: str, path: str) -> CifarData:
  """meta, train and test of the archive or extracted folder, reading the archive once."""
  return CifarData(**_read_members(source, path, {
      'meta': parse_cifar_meta, 'train': parse_cifar_split, 'test': parse_cifar_split}))


def read_cifar_meta(source: str, path: str) -> CifarMeta:
  return _read_members(source, path, {'meta': parse_cifar_meta})['meta']


def read_cifar_split(source: str, path: str, member: str) -> CifarSplit:
  return _read_members(source, path, {member: parse_cifar_split})[member]


# --- image folders ---


class FolderScan(NamedTuple):
  class_names: Tuple[str, ...]  # sorted folder names of train/
  train_files: Dict[str, List[str]]  # class -> sorted image paths
  test_files: Optional[Dict[str, List[str]]]  # None when there is no test/
  skipped: int  # non-image files passed over
  image_size: Tuple[int, int]  # (height, width) shared by every image


def _list_class_dirs(root: str) -> List[str]:
  return sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))


def _list_images(class_dir: str) -> Tuple[List[str], int]:
  files, skipped = [], 0
  for name in sorted(os.listdir(class_dir)):
    full = os.path.join(class_dir, name)
    if not os.path.isfile(full):
      continue
    if os.path.splitext(name)[1].lower() in constants.IMAGE_EXTENSIONS:
      files.append(full)
    else:
      skipped += 1
  return files, skipped


def image_size_of(path: str) -> Tuple[int, int]:
  """(height, width) of an image file, reading only its header."""
  try:
    with Image.open(path) as img:
      img.verify()
      width, height = img.size
  except Exception as e:  # PIL raises many types for broken files
    raise UserError(f'{path}: not a readable image ({e})') from e
  return height, width


def scan_image_folder(root: str, check_sizes: bool = True) -> FolderScan:
  """Lists PATH/train/<class>/* (and PATH/test/<class>/*), checking the layout.

  Non-image files (by extension) are skipped and counted; an empty class, a class in test/ that
  is not in train/, an unreadable image or images of different sizes are errors.
  """
  train_root = os.path.join(root, constants.TRAIN_SPLIT)
  if not os.path.isdir(train_root):
    raise UserError(f'{root}: no train/ folder (expected PATH/train/<class>/*.png|jpg)')
  class_names = tuple(_list_class_dirs(train_root))
  if not class_names:
    raise UserError(f'{train_root}: no class folders')
  skipped = 0

  def collect(split_root, names):
    nonlocal skipped
    files = {}
    for name in names:
      found, n_skipped = _list_images(os.path.join(split_root, name))
      skipped += n_skipped
      if not found:
        raise UserError(f'{os.path.join(split_root, name)}: class {name!r} has no images')
      files[name] = found
    return files

  train_files = collect(train_root, class_names)
  test_files = None
  test_root = os.path.join(root, constants.TEST_SPLIT)
  if os.path.isdir(test_root):
    test_names = _list_class_dirs(test_root)
    extra = sorted(set(test_names) - set(class_names))
    if extra:
      raise UserError(f'{test_root}: classes {extra} are not in train/')
    test_files = collect(test_root, [n for n in class_names if n in test_names])
  all_files = [f for files in (train_files, test_files or {}) for fs in files.values() for f in fs]
  size = image_size_of(all_files[0])
  if check_sizes:
    for path in all_files[1:]:
      other = image_size_of(path)
      if other != size:
        raise UserError(f'images of mixed sizes: {all_files[0]} is {size[1]}x{size[0]}, '
                        f'{path} is {other[1]}x{other[0]}; resize them to one size first')
  return FolderScan(class_names, train_files, test_files, skipped, size)


def load_image(path: str, expected_size: Tuple[int, int]) -> np.ndarray:
  """An image file as HxWx3 uint8 (grey and RGBA converted to RGB)."""
  try:
    with Image.open(path) as img:
      array = np.asarray(img.convert('RGB'), dtype=np.uint8)
  except Exception as e:  # PIL raises many types for broken files
    raise UserError(f'{path}: not a readable image ({e})') from e
  if array.shape[:2] != tuple(expected_size):
    raise UserError(f'{path}: image is {array.shape[1]}x{array.shape[0]}, the others are '
                    f'{expected_size[1]}x{expected_size[0]}')
  return array


# --- splitting ---


def holdout_count(n: int, fraction: float) -> int:
  """How many of a class's n items are held out: round(fraction * n), at least one while n > 1,
  and never all of them."""
  return max(min(max(int(round(fraction * n)), 1), n - 1), 0)


def stratified_holdout(labels: Sequence[int], fraction: float, seed: int) -> np.ndarray:
  """A boolean mask choosing round(fraction * n_c) random items of each class c (see holdout_count),
  the same for the same labels, fraction, seed."""
  labels = np.asarray(labels)
  mask = np.zeros(len(labels), dtype=bool)
  if fraction <= 0:
    return mask
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    count = holdout_count(len(members), fraction)
    rng = np.random.default_rng([seed, int(c)])
    mask[rng.permutation(members)[:count]] = True
  return mask


def tail_holdout(files: Sequence[str], fraction: float) -> Tuple[List[str], List[str]]:
  """Splits one class's sorted files: the last round(fraction * n) (at least one) are held out."""
  count = holdout_count(len(files), fraction)
  if count <= 0:
    raise UserError(f'cannot hold out a test image from a class with {len(files)} image(s)')
  return list(files[:-count]), list(files[-count:])
