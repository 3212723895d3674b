"""Reading image sources: the CIFAR-100 python archive, its extracted folder, an image folder.

Pure functions (plus file reads): the runner's preflight and the ExampleGen executor both use them,
and tests call them directly.
"""
import concurrent.futures
import contextlib
import hashlib
import io
import multiprocessing
import os
import pickle
import struct
import tarfile
import warnings
import zlib
from typing import BinaryIO, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

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


def _latin1_encode(text: str, encoding: str = 'latin1') -> bytes:
  """`_codecs.encode` as Python 3 pickles bytes with protocol 2, and nothing else: any other codec
  in a CIFAR-100 pickle is refused."""
  if encoding != 'latin1' or not isinstance(text, str):
    raise pickle.UnpicklingError(f'_codecs.encode with {encoding!r} is not allowed in a '
                                 'CIFAR-100 pickle')
  return text.encode('latin1')


class _SafeUnpickler(pickle.Unpickler):
  """Unpickles plain containers and numpy arrays only: a pickle can run code, this one cannot."""
  _ALLOWED = {
      ('numpy.core.multiarray', '_reconstruct'),
      ('numpy._core.multiarray', '_reconstruct'),
      ('numpy', 'ndarray'),
      ('numpy', 'dtype'),
  }

  def find_class(self, module, name):
    if (module, name) == ('_codecs', 'encode'):  # bytes pickled by Python 3 with protocol 2
      return _latin1_encode
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


def _names(values, what: str, key: str) -> Tuple[str, ...]:
  if not isinstance(values, (list, tuple)) or not values or not all(
      isinstance(v, (bytes, str)) for v in values):
    raise UserError(f'{what}: {key!r} is not a list of names')
  names = tuple(v.decode('utf-8', 'replace') if isinstance(v, bytes) else v for v in values)
  if len(set(names)) != len(names):
    raise UserError(f'{what}: {key!r} repeats a name')
  return names


def parse_cifar_meta(f: BinaryIO, what: str) -> CifarMeta:
  meta = _unpickle(f, what)
  try:
    return CifarMeta(*(_names(meta[key], what, key)
                       for key in ('fine_label_names', 'coarse_label_names')))
  except KeyError as e:
    raise UserError(f'{what} has no {e.args[0]!r}') from e


def _integers(batch: Dict[str, object], key: str, what: str) -> np.ndarray:
  """batch[key] as an integer array (no silent rounding of floats or wrapping of big values)."""
  try:
    values = np.asarray(batch[key])
  except KeyError as e:
    raise UserError(f'{what} has no {key!r}') from e
  except Exception as e:  # ragged lists and the like
    raise UserError(f'{what}: {key!r} is not an array ({e})') from e
  if values.dtype.kind not in 'iu':
    raise UserError(f'{what}: {key!r} holds {values.dtype} values, not integers')
  return values


def parse_cifar_split(f: BinaryIO, what: str) -> CifarSplit:
  """One of the 'train'/'test' pickles as HWC uint8 images and int labels."""
  batch = _unpickle(f, what)
  data = _integers(batch, 'data', what)
  fine = _integers(batch, 'fine_labels', what).astype(np.int64)
  coarse = _integers(batch, 'coarse_labels', what).astype(np.int64)
  if (data.ndim != 2 or data.shape[1] != 3072 or fine.ndim != 1 or coarse.ndim != 1 or
      not len(data) == len(fine) == len(coarse)):
    raise UserError(f'{what}: expected data N x 3072 and N labels, found {data.shape}, '
                    f'{len(fine)} fine and {len(coarse)} coarse labels')
  if data.dtype != np.uint8:  # the official file's is uint8: no copy, no scan
    if data.size and (data.min() < 0 or data.max() > 255):
      raise UserError(f'{what}: pixel values outside 0..255')
    data = data.astype(np.uint8)
  # Rows are channel-major: 1024 red, then 1024 green, then 1024 blue values.
  images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # a view: no copy
  return CifarSplit(images, fine, coarse)


def check_labels(split: CifarSplit, meta: CifarMeta, what: str) -> None:
  """Every label names a class of `meta`, so that no image is silently dropped or mislabelled."""
  for labels, names, kind in ((split.fine_labels, meta.fine_names, 'fine'),
                              (split.coarse_labels, meta.coarse_names, 'coarse')):
    bad = labels[(labels < 0) | (labels >= len(names))]
    if len(bad):
      raise UserError(f'{what}: {kind} label {int(bad[0])} is outside 0..{len(names) - 1} '
                      f'(meta has {len(names)} {kind} label names)')


class CifarData(NamedTuple):
  meta: CifarMeta
  train: CifarSplit
  test: CifarSplit


def read_cifar(source: str, path: str) -> CifarData:
  """meta, train and test of the archive or extracted folder, reading the archive once."""
  data = CifarData(**_read_members(source, path, {
      'meta': parse_cifar_meta, 'train': parse_cifar_split, 'test': parse_cifar_split}))
  check_labels(data.train, data.meta, f'{path}: train')
  check_labels(data.test, data.meta, f'{path}: test')
  return data


def read_cifar_meta(source: str, path: str) -> CifarMeta:
  return _read_members(source, path, {'meta': parse_cifar_meta})['meta']


def read_cifar_split(source: str, path: str, member: str) -> CifarSplit:
  return _read_members(source, path, {member: parse_cifar_split})[member]


# --- image folders ---

# The only decoders the image readers use (a phone's multi-picture JPEG opens as JPEG). Pillow would
# otherwise try every format it knows on any file: fewer decoders are less attack surface, and a
# GIF or TIFF named .png is refused instead of read.
IMAGE_FORMATS = ('PNG', 'JPEG')
ALPHA_BACKGROUND = (255, 255, 255)  # transparent pixels are composited onto white
# Images checked per worker task (~60 ms of work for 32x32 PNGs): amortises a task's overhead.
_CHECK_CHUNK = 256
# Below this many images, the preflight decodes them in-process: starting worker processes would
# cost more than they save.
_PROCESS_MIN_IMAGES = 4000

# What `read_image` does to each Pillow mode, as the console's note names it (None: nothing, it
# is 8-bit RGB). A mode missing here (e.g. 'F', 'LAB', 'HSV') is refused.
_CONVERSIONS = {
    'RGB': None,
    'L': 'grey',
    '1': 'black-and-white',
    'P': 'palette',
    'CMYK': 'CMYK',
    'RGBA': 'alpha',
    'LA': 'alpha',
    'PA': 'alpha',
    'I;16': '16-bit grey',
    'I;16B': '16-bit grey',
    'I;16L': '16-bit grey',
    'I': '16-bit grey',  # PNG's 16-bit grey, as older Pillows open it
}
_ALPHA_MODES = ('RGBA', 'LA', 'PA')
_16_BIT_GREY_MODES = ('I;16', 'I;16B', 'I;16L', 'I')


def _open_image(path: str, data: bytes) -> Image.Image:
  """Opens the image file `path`, read as `data` (its header only), refusing other formats and
  decompression bombs: an image over Pillow's `Image.MAX_IMAGE_PIXELS` takes gigabytes to decode."""
  try:
    img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
  except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
    raise UserError(f'{path}: refused as a decompression bomb ({e})') from e
  except UnidentifiedImageError as e:
    raise UserError(f'{path}: not a readable image (not a PNG or JPEG file)') from e
  width, height = img.size
  limit = Image.MAX_IMAGE_PIXELS
  if limit and width * height > limit:
    img.close()
    raise UserError(f'{path}: refused as a decompression bomb ({width}x{height} = '
                    f'{width * height:,} pixels, over the limit of {limit:,}, '
                    'PIL.Image.MAX_IMAGE_PIXELS)')
  return img


def _conversion_of(img: Image.Image) -> Optional[str]:
  """How `_to_rgb` changes the image (None: not at all); call it before the pixels are loaded."""
  if img.mode not in _CONVERSIONS:
    raise ValueError(f'image mode {img.mode} is not supported; save it as 8-bit RGB')
  if img.mode == 'P' and 'transparency' in img.info:
    return 'alpha'
  # 16 bits per channel RGB: Pillow keeps the high byte of each value, as `_to_rgb` does for
  # 16-bit grey (16-bit RGBA too, counted as 'alpha').
  if img.mode == 'RGB' and img.tile and ';16' in str(img.tile[0].args):
    return '16-bit'
  return _CONVERSIONS[img.mode]


def _to_rgb(img: Image.Image) -> np.ndarray:
  """HxWx3 uint8 pixels: grey and palette expanded, alpha composited onto ALPHA_BACKGROUND,
  16-bit values scaled to 8 (v >> 8; Pillow's own convert clips them at 255)."""
  if img.mode == 'P':
    img = img.convert('RGBA' if 'transparency' in img.info else 'RGB')
  if img.mode in _16_BIT_GREY_MODES:
    grey = (np.clip(np.asarray(img).astype(np.int64), 0, 65535) >> 8).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)
  if img.mode in _ALPHA_MODES:
    rgba = img.convert('RGBA')
    background = Image.new('RGBA', rgba.size, ALPHA_BACKGROUND + (255,))
    img = Image.alpha_composite(background, rgba)
  if img.mode != 'RGB':
    img = img.convert('RGB')
  # The bytes Pillow's `__array_interface__` would hand `np.asarray`, without its generic
  # array-interface path: ~12 us less per small image, the same read-only uint8 array.
  return np.frombuffer(img.tobytes(), dtype=np.uint8).reshape(img.height, img.width, 3)


_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))  # (x0, y0, dx, dy) of the seven interlace passes


def _png_rows_missing(data: bytes) -> Optional[str]:
  """Why a PNG's pixel data is shorter than its header says, or None. Pillow fills the missing
  rows with black when the compressed stream ends early but cleanly (every chunk's CRC right):
  a writer's bug, not a cut file, which Pillow does refuse."""
  if not data.startswith(_PNG_SIGNATURE):
    return None
  pos, header, idat = len(_PNG_SIGNATURE), None, []
  while pos + 8 <= len(data):
    length, kind = struct.unpack('>I4s', data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + length]
    if kind == b'IHDR':
      header = struct.unpack('>IIBBBBB', body[:13])
    elif kind == b'IDAT':
      idat.append(body)
    elif kind == b'IEND':
      break
    pos += 12 + length
  if header is None or not idat:
    return None  # Pillow has refused it already
  width, height, depth, colour, _, _, interlace = header
  bits = depth * _PNG_CHANNELS.get(colour, 1)
  passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
  expected = 0
  for x0, y0, dx, dy in passes:
    pass_width, pass_height = -(-(width - x0) // dx), -(-(height - y0) // dy)
    if pass_width > 0 and pass_height > 0:
      expected += pass_height * (1 + -(-pass_width * bits // 8))  # a filter byte per row
  decompressor = zlib.decompressobj()
  found = len(decompressor.decompress(b''.join(idat), expected + 1))
  if found < expected:
    return f'pixel data ends after {found:,} of {expected:,} bytes'
  return None


def read_file(path: str) -> bytes:
  """A file's bytes in one unbuffered read (`readall` sizes it from `fstat`): a buffered
  `open` costs ~10 us more per small image file, which is most of a 32x32 JPEG's I/O."""
  with open(path, 'rb', buffering=0) as f:
    return f.readall()


def read_image(path: str) -> Tuple[np.ndarray, Optional[str]]:
  """An image file's HxWx3 uint8 pixels, fully decoded, and how they were converted to 8-bit RGB
  (None, or e.g. 'grey', 'alpha', '16-bit grey'). The one reader of the preflight, ExampleGen and
  predict, so that all three accept, refuse and convert the same images the same way. A
  truncated file fails here (decoding it, not only `Image.verify()`, which passes a cut JPEG)."""
  try:
    data = read_file(path)  # once: Pillow decodes it, `_png_rows_missing` measures it
    with _open_image(path, data) as img:
      conversion = _conversion_of(img)
      pixels = _to_rgb(img)
    missing = _png_rows_missing(data)
    if missing:
      raise ValueError(missing)
    return pixels, conversion
  except UserError:
    raise
  except Exception as e:  # PIL raises many types for broken files
    raise UserError(f'{path}: not a readable image ({e})') from e


class FolderScan(NamedTuple):
  class_names: Tuple[str, ...]  # sorted folder names of train/
  train_files: Dict[str, List[str]]  # class -> sorted image paths
  test_files: Optional[Dict[str, List[str]]]  # None when there is no test/
  skipped: int  # files passed over: not an image by extension, or hidden
  image_size: Tuple[int, int]  # (height, width) shared by every image
  converted: Dict[str, str]  # path -> how it is converted to 8-bit RGB (checked images only)


def _check_inside(path: str, real_root: str, root: str) -> None:
  """Refuses a symlink that leads out of the image folder: what it points to is not the folder's
  (a shared folder could pull in any file of the user's), and its runs could not be reproduced."""
  if os.path.islink(path):
    target = os.path.realpath(path)
    if os.path.commonpath([target, real_root]) != real_root:
      raise UserError(f'{path}: a symlink to {target}, outside {root}; copy what it points to '
                      'into the folder')


def _entries(folder: str, real_root: str, root: str) -> Tuple[List[os.DirEntry], int]:
  """A folder's entries sorted by name, and how many hidden files it has (.DS_Store, ._x.png):
  hidden entries (also folders such as .ipynb_checkpoints) are left out."""
  try:
    with os.scandir(folder) as it:
      found = list(it)
  except OSError as e:
    raise UserError(f'{folder}: cannot list it ({e.strerror})') from e
  entries = sorted((e for e in found if not e.name.startswith('.')), key=lambda e: e.name)
  for entry in entries:
    if entry.is_symlink():
      _check_inside(entry.path, real_root, root)
  hidden = sum(1 for e in found if e.name.startswith('.') and e.is_file())
  return entries, hidden


def _list_class_dirs(split_root: str, real_root: str, root: str) -> List[str]:
  _check_inside(split_root, real_root, root)
  return [e.name for e in _entries(split_root, real_root, root)[0] if e.is_dir()]


def _list_images(class_dir: str, real_root: str, root: str) -> Tuple[List[str], int]:
  entries, skipped = _entries(class_dir, real_root, root)
  files = []
  for entry in entries:
    if not entry.is_file():
      continue
    if os.path.splitext(entry.name)[1].lower() in constants.IMAGE_EXTENSIONS:
      files.append(entry.path)
    else:
      skipped += 1
  return files, skipped


def _check_chunk(paths: Sequence[str]) -> List[Tuple[Tuple[int, int], Optional[str]]]:
  """(size, conversion) of each image, fully decoded by `read_image`."""
  checked = []
  for path in paths:
    pixels, conversion = read_image(path)
    checked.append((pixels.shape[:2], conversion))
  return checked


def _refuse_bomb_warnings() -> None:
  # Pillow only warns about images between its pixel limit and twice it: refuse them too.
  warnings.simplefilter('error', Image.DecompressionBombWarning)


def _check_images(paths: Sequence[str],
                  workers: int) -> Tuple[Tuple[int, int], Dict[str, str]]:
  """The images' shared (height, width) and {path: conversion} of those `read_image` converts,
  decoding every image. Stops at the first unreadable image or other size (UserError).

  Many images are decoded in `workers` processes: a small image's decode is mostly Python, under
  the GIL, so threads gained nothing (docs/reliability.md); starting them costs ~0.5 CPU-s each.
  """
  chunks = [paths[i:i + _CHECK_CHUNK] for i in range(0, len(paths), _CHECK_CHUNK)]
  size, converted = None, {}
  with contextlib.ExitStack() as stack:
    stack.enter_context(warnings.catch_warnings())
    _refuse_bomb_warnings()
    if workers > 1 and len(paths) >= _PROCESS_MIN_IMAGES:
      pool = concurrent.futures.ProcessPoolExecutor(
          workers, mp_context=multiprocessing.get_context('spawn'),
          initializer=_refuse_bomb_warnings)
      stack.callback(pool.shutdown, wait=True, cancel_futures=True)
      results = pool.map(_check_chunk, chunks)
    else:
      results = map(_check_chunk, chunks)
    for chunk, checked in zip(chunks, results):
      for path, (other, conversion) in zip(chunk, checked):
        if size is None:
          size = other
        elif other != size:
          raise UserError(f'images of mixed sizes: {paths[0]} is {size[1]}x{size[0]}, '
                          f'{path} is {other[1]}x{other[0]}; resize them to one size first')
        if conversion:
          converted[path] = conversion
  return size, converted


def scan_image_folder(root: str, check_sizes: bool = True,
                      workers: Optional[int] = None) -> FolderScan:
  """Lists PATH/train/<class>/* (and PATH/test/<class>/*), checking the layout and the images.

  Non-image files (by extension) and hidden files are skipped and counted. An empty class, a class
  in test/ that is not in train/, a symlink out of `root`, an unreadable, truncated or unsupported
  image, a decompression bomb or images of different sizes are errors. With `check_sizes` every
  image is decoded (by `workers` processes when there are many, default one per CPU), else only
  the first.
  """
  train_root = os.path.join(root, constants.TRAIN_SPLIT)
  if not os.path.isdir(train_root):
    raise UserError(f'{root}: no train/ folder (expected PATH/train/<class>/*.png|jpg)')
  real_root = os.path.realpath(root)
  class_names = tuple(_list_class_dirs(train_root, real_root, root))
  if not class_names:
    raise UserError(f'{train_root}: no class folders')
  skipped = 0

  def collect(split_root, names):
    nonlocal skipped
    files = {}
    for name in names:
      found, n_skipped = _list_images(os.path.join(split_root, name), real_root, root)
      skipped += n_skipped
      if not found:
        raise UserError(f'{os.path.join(split_root, name)}: class {name!r} has no images')
      files[name] = found
    return files

  train_files = collect(train_root, class_names)
  test_files = None
  test_root = os.path.join(root, constants.TEST_SPLIT)
  if os.path.isdir(test_root):
    test_names = _list_class_dirs(test_root, real_root, root)
    extra = sorted(set(test_names) - set(class_names))
    if extra:
      raise UserError(f'{test_root}: classes {extra} are not in train/')
    test_files = collect(test_root, [n for n in class_names if n in test_names])
  all_files = [f for files in (train_files, test_files or {}) for fs in files.values() for f in fs]
  size, converted = _check_images(all_files if check_sizes else all_files[:1],
                                  workers or os.cpu_count() or 1)
  return FolderScan(class_names, train_files, test_files, skipped, size, converted)


def load_image(path: str, expected_size: Tuple[int, int]) -> np.ndarray:
  """An image file as HxWx3 uint8, converted as `read_image` does."""
  array, _ = read_image(path)
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
