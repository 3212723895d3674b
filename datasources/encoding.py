"""Images -> serialized tf.Examples -> gzipped TFRecord shards, without importing TensorFlow.

ExampleGen's Beam workers (components/example_gen/shards.py) and `pipeline.predict` use it. Keeping
it free of TensorFlow spares each worker several seconds and ~650 MB of imports; writing the PNG, Example
and TFRecord bytes directly is several times faster than PIL, protobuf objects and Beam's
WriteToTFRecord for CIFAR's tiny images (docs/benchmarks.md). tests/test_encoding.py proves the
bytes are what PIL and TensorFlow read and write.
"""
import functools
import struct
import zlib
from typing import Dict, Iterable, List, Sequence, Tuple

import google_crc32c
import numpy as np

from base import compat, constants

# --- PNG ---

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_SUB = 1  # PNG filter type


def _png_chunk(kind: bytes, data: bytes) -> bytes:
  return struct.pack('>I', len(data)) + kind + data + struct.pack(
      '>I', zlib.crc32(kind + data) & 0xffffffff)


_PNG_END = _png_chunk(b'IEND', b'')


def sub_rows(images: np.ndarray) -> np.ndarray:
  """[N, H, 1 + 3W] PNG scanlines of [N, H, W, 3] uint8 images, each with the Sub filter (a byte
  minus the same channel's byte to its left, modulo 256).

  The small residuals of natural images let the TFRecord file's gzip entropy-code them well
  (`write_tfrecord_gz`). Paeth compressed natural images ~10% better still but cost ~15x more
  time in numpy; Sub is one vectorized subtraction.
  """
  n, height, width, channels = images.shape
  x = images.reshape(n, height, width * channels)
  rows = np.empty((n, height, 1 + width * channels), dtype=np.uint8)
  rows[:, :, 0] = _SUB
  rows[:, :, 1:1 + channels] = x[:, :, :channels]
  np.subtract(x[:, :, channels:], x[:, :, :-channels], out=rows[:, :, 1 + channels:])
  return rows


def encode_pngs(images: np.ndarray) -> List[bytes]:
  """Lossless RGB PNGs of [N, H, W, 3] uint8 images.

  Filtered but not compressed (zlib level 0): the TFRecord file's gzip compresses the filtered
  rows of a whole shard instead, once (`write_tfrecord_gz`).
  """
  _, height, width, _ = images.shape
  header = _PNG_SIGNATURE + _png_chunk(
      b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0))
  return [header + _png_chunk(b'IDAT', zlib.compress(r.tobytes(), 0)) + _PNG_END
          for r in sub_rows(images)]


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


def bytes_feature(value: bytes) -> bytes:
  return _field(1, _field(1, value))  # Feature.bytes_list = 1 { BytesList.value = 1 }


def int64_feature(value: int) -> bytes:
  return _field(3, _field(1, _varint(value)))  # Feature.int64_list = 3 { packed value = 1 }


def _map_entry(key: str, feature: bytes) -> bytes:
  return _field(1, _field(1, key.encode('utf-8')) + _field(2, feature))


def serialize_example(features: Dict[str, bytes]) -> bytes:
  """tf.train.Example{features{feature: map}} from already-encoded Feature messages, with the
  map keys in the order `SerializeToString(deterministic=True)` writes them (it differs between
  the stacks' protobufs: base/compat.py)."""
  return _field(1, b''.join(_map_entry(key, features[key])
                            for key in compat.deterministic_map_order(features)))


class ExampleEncoder:
  """Serializes the contract's features for the team's classes (label = position in the list)."""

  def __init__(self, class_names: Sequence[str], source_ids: Sequence[int],
               coarse_names: Sequence[str]):
    self._label_of = {int(source_id): n for n, source_id in enumerate(source_ids)}
    # Per class, the features that do not depend on the image, encoded once.
    self._fixed = [{
        constants.LABEL_KEY: int64_feature(n),
        constants.LABEL_NAME_KEY: bytes_feature(name.encode('utf-8')),
        constants.FINE_LABEL_KEY: int64_feature(int(source_id)),
        constants.COARSE_LABEL_KEY: bytes_feature(coarse.encode('utf-8')),
    } for n, (name, source_id, coarse) in enumerate(zip(class_names, source_ids, coarse_names))]
    self._templates: Dict[Tuple[int, int], Tuple[bytes, bytes]] = {}

  def encode(self, png: bytes, source_id: int) -> bytes:
    """head + png + tail: the PNG's bytes end the image feature, and only their length changes
    the bytes around them. Every PNG of one image size has the same length (`encode_pngs` does
    not compress), so a class needs one (head, tail), serialized once instead of per image."""
    label = self._label_of[source_id]
    template = self._templates.get((label, len(png)))
    if template is None:
      features = {**self._fixed[label], constants.IMAGE_KEY: bytes_feature(png)}
      full = serialize_example(features)
      order = compat.deterministic_map_order(features)
      tail = b''.join(_map_entry(k, features[k])
                      for k in order[order.index(constants.IMAGE_KEY) + 1:])
      template = self._templates[label, len(png)] = (full[:len(full) - len(tail) - len(png)],
                                                     tail)
    return template[0] + png + template[1]


# --- TFRecord files ---


def _masked_crc(data: bytes) -> bytes:
  crc = google_crc32c.value(data)
  return struct.pack('<I', (((crc >> 15) | (crc << 17)) + 0xa282ead8) & 0xffffffff)


@functools.lru_cache(maxsize=None)
def _length_header(length: int) -> bytes:
  """Few lengths occur (one per class and image size): computed once each."""
  encoded = struct.pack('<Q', length)
  return encoded + _masked_crc(encoded)


def tfrecords(records: Iterable[bytes]) -> bytes:
  """TFRecord framing: length (uint64 LE), its masked crc32c, the data, the data's masked crc32c."""
  parts = []
  for record in records:
    parts += (_length_header(len(record)), record, _masked_crc(record))
  return b''.join(parts)


def write_tfrecord_gz(path: str, records: Iterable[bytes]) -> None:
  """Writes one gzip file of TFRecords (local or any Beam filesystem), as
  TFRecordDataset(compression_type='GZIP') reads them.

  Huffman-only deflate: Sub-filtered pixels have few repeated strings, so the LZ77 matching of
  zlib's levels 1-9 cost 2.5-7x the time and saved at most 2% of disk, level 1 none at all
  (docs/benchmarks.md). wbits=31 writes a gzip header without a name or time: the same images
  give the same bytes.
  """
  # Beam only here: importing it costs ~9 s, which `pipeline.predict` (encoding, no writing) skips.
  from apache_beam.io.filesystem import CompressionTypes  # pylint: disable=g-import-not-at-top
  from apache_beam.io.filesystems import FileSystems  # pylint: disable=g-import-not-at-top
  compressor = zlib.compressobj(1, zlib.DEFLATED, 31, 9, zlib.Z_HUFFMAN_ONLY)
  data = compressor.compress(tfrecords(records)) + compressor.flush()
  with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
    f.write(data)
