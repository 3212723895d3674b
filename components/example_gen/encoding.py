"""Images -> serialized tf.Examples of the data contract, without importing TensorFlow.

Beam workers in multi_processing mode import this module to run the DoFns below. Keeping it free
of TensorFlow spares each worker ~5 s and ~500 MiB of imports, and writing the PNG and Example
bytes directly is 2-3x faster than PIL and protobuf objects for CIFAR's tiny images
(docs/benchmarks.md). tests/test_encoding.py proves the bytes equal TensorFlow's own.
"""
import struct
import zlib
from typing import Dict, Iterable, List, Sequence, Tuple

import apache_beam as beam
import numpy as np

from components.example_gen import sources
from pipeline import constants

# --- PNG ---

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def _png_chunk(kind: bytes, data: bytes) -> bytes:
  return struct.pack('>I', len(data)) + kind + data + struct.pack(
      '>I', zlib.crc32(kind + data) & 0xffffffff)


_PNG_END = _png_chunk(b'IEND', b'')


def encode_pngs(images: np.ndarray) -> List[bytes]:
  """Lossless RGB PNGs of [N, H, W, 3] uint8 images.

  Uncompressed (filter 0, zlib level 0): the TFRecord files are gzipped anyway, and compressing
  twice cost ExampleGen 40% more time for 4% less disk.
  """
  n, height, width, _ = images.shape
  rows = np.zeros((n, height, 1 + 3 * width), dtype=np.uint8)  # a 0 filter byte starts each row
  rows[:, :, 1:] = np.reshape(images, (n, height, 3 * width))
  header = _PNG_SIGNATURE + _png_chunk(
      b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0))
  return [header + _png_chunk(b'IDAT', zlib.compress(r.tobytes(), 0)) + _PNG_END for r in rows]


# --- tf.train.Example wire format ---


def _varint(value: int) -> bytes:
  out = bytearray()
  while True:
    byte = value & 0x7F
    value >>= 7
    if value:
      out.append(byte | 0x80)
    else:
      out.append(byte)
      return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
  """A length-delimited protobuf field."""
  return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _bytes_feature(value: bytes) -> bytes:
  return _field(1, _field(1, value))  # Feature.bytes_list = 1 { BytesList.value = 1 }


def _int64_feature(value: int) -> bytes:
  return _field(3, _field(1, _varint(value)))  # Feature.int64_list = 3 { packed value = 1 }


def serialize_example(features: Dict[str, bytes]) -> bytes:
  """tf.train.Example{features{feature: map}} from already-encoded Feature messages, with the
  map keys sorted, as `SerializeToString(deterministic=True)` writes them."""
  entries = b''.join(
      _field(1, _field(1, key.encode('utf-8')) + _field(2, value))
      for key, value in sorted(features.items()))
  return _field(1, entries)


class ExampleEncoder:
  """Serializes the contract's features for the team's classes (label = position in the list)."""

  def __init__(self, class_names: Sequence[str], source_ids: Sequence[int],
               coarse_names: Sequence[str]):
    self._label_of = {int(source_id): n for n, source_id in enumerate(source_ids)}
    # Per class, the features that do not depend on the image, encoded once.
    self._fixed = [{
        constants.LABEL_KEY: _int64_feature(n),
        constants.LABEL_NAME_KEY: _bytes_feature(name.encode('utf-8')),
        constants.FINE_LABEL_KEY: _int64_feature(int(source_id)),
        constants.COARSE_LABEL_KEY: _bytes_feature(coarse.encode('utf-8')),
    } for n, (name, source_id, coarse) in enumerate(zip(class_names, source_ids, coarse_names))]

  def encode(self, png: bytes, source_id: int) -> bytes:
    features = dict(self._fixed[self._label_of[source_id]])
    features[constants.IMAGE_KEY] = _bytes_feature(png)
    return serialize_example(features)


# --- Beam DoFns ---

_ARRAYS: Dict[str, np.ndarray] = {}  # per worker process: memory-mapped image arrays


def _images(npy_path: str) -> np.ndarray:
  if npy_path not in _ARRAYS:
    _ARRAYS[npy_path] = np.load(npy_path, mmap_mode='r')
  return _ARRAYS[npy_path]


class EncodeArrayChunk(beam.DoFn):
  """(images .npy, indices, source ids) -> serialized examples."""

  def __init__(self, encoder: ExampleEncoder):
    self._encoder = encoder

  def process(self, element: Tuple[str, List[int], List[int]]) -> Iterable[bytes]:
    npy_path, indices, source_ids = element
    pngs = encode_pngs(np.asarray(_images(npy_path)[indices]))
    for png, source_id in zip(pngs, source_ids):
      yield self._encoder.encode(png, source_id)


class EncodeFileChunk(beam.DoFn):
  """[(image path, source id)] -> serialized examples; every image must have `image_size`."""

  def __init__(self, encoder: ExampleEncoder, image_size: Tuple[int, int]):
    self._encoder = encoder
    self._image_size = tuple(image_size)

  def process(self, element: List[Tuple[str, int]]) -> Iterable[bytes]:
    images = np.stack([sources.load_image(path, self._image_size) for path, _ in element])
    for png, (_, source_id) in zip(encode_pngs(images), element):
      yield self._encoder.encode(png, source_id)
