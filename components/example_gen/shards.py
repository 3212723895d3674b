"""Beam DoFns that write ExampleGen's output shards: one element = one output file.

Beam workers in multi_processing mode import this module: like `datasources.encoding`, it stays
free of TensorFlow, which spares each worker several seconds and ~650 MB of imports.
"""
from typing import Iterable, List, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from datasources import encoding, sources
from datasources.encoding import ExampleEncoder


class _WriteShard(beam.DoFn):
  """(output file, images, source ids) -> the examples written to the file; yields their count."""

  def __init__(self, encoder: ExampleEncoder):
    self._encoder = encoder

  def _load(self, images) -> np.ndarray:
    raise NotImplementedError

  def process(self, element: Tuple[str, object, List[int]]) -> Iterable[int]:
    path, images, source_ids = element
    pngs = encoding.encode_pngs(self._load(images)) if source_ids else []
    encoding.write_tfrecord_gz(path, (self._encoder.encode(png, source_id)
                             for png, source_id in zip(pngs, source_ids)))
    yield len(source_ids)


class WriteArrayShard(_WriteShard):
  """Images = (raw file of uint8 images of `image_shape`, first image, end): read, not mapped,
  so that a worker's memory holds one shard, not every page of the file it has touched."""

  def __init__(self, encoder: ExampleEncoder, image_shape: Tuple[int, int, int]):
    super().__init__(encoder)
    self._shape = tuple(image_shape)

  def _load(self, images: Tuple[str, int, int]) -> np.ndarray:
    path, start, end = images
    size = int(np.prod(self._shape))
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
      f.seek(start * size)
      data = f.read((end - start) * size)
    return np.frombuffer(data, dtype=np.uint8).reshape((end - start,) + self._shape)


class WriteFileShard(_WriteShard):
  """Images = image file paths; every image must have `image_size`."""

  def __init__(self, encoder: ExampleEncoder, image_size: Tuple[int, int]):
    super().__init__(encoder)
    self._image_size = tuple(image_size)

  def _load(self, images: List[str]) -> np.ndarray:
    return np.stack([sources.load_image(path, self._image_size) for path in images])
