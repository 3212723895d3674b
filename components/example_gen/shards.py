"""Beam DoFns that write ExampleGen's output shards: one element = one output file.

An element names its shard in the plan, a JSON file that each DoFn instance reads once: 25,000
image paths carried through Beam's Create and reshuffle as elements cost ~0.6 s of encoding,
against ~0.02 s to write and read them as one file. A DoFn writes (gzips) a shard in a second
thread while it decodes the next one: zlib releases the GIL, so on 2 cores the ~30 us of gzip per
image overlaps the decoding (docs/benchmarks.md).

Beam workers in multi_processing mode import this module: like `datasources.encoding`, it stays
free of TensorFlow, which spares each worker several seconds and ~650 MB of imports.
"""
import json
from concurrent import futures
from typing import Any, Dict, Iterable, List, Optional, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from datasources import encoding, sources
from datasources.encoding import ExampleEncoder


# Per split, its shards: [images, source ids]; `images` is what the split's DoFn loads.
Plan = Dict[str, List[Tuple[Any, List[int]]]]


def write_plan(plan: Plan, path: str) -> None:
  with FileSystems.create(path, mime_type='application/json',
                          compression_type=CompressionTypes.UNCOMPRESSED) as f:
    f.write(json.dumps(plan).encode())


def _read_plan(path: str) -> Plan:
  with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
    return json.loads(f.read())


class _WriteShard(beam.DoFn):
  """(output file, split, shard index in the plan) -> the shard's examples written to the file;
  yields their count."""

  def __init__(self, encoder: ExampleEncoder, plan_path: str):
    self._encoder = encoder
    self._plan_path = plan_path
    self._plan: Plan = {}
    self._writer: Optional[futures.ThreadPoolExecutor] = None
    self._writing: Optional[futures.Future] = None

  def setup(self):
    self._plan = _read_plan(self._plan_path)
    self._writer = futures.ThreadPoolExecutor(1)

  def _load(self, images) -> np.ndarray:
    raise NotImplementedError

  def process(self, element: Tuple[str, str, int]) -> Iterable[int]:
    path, split, index = element
    images, source_ids = self._plan[split][index]
    pngs = encoding.encode_pngs(self._load(images)) if source_ids else []
    records = [self._encoder.encode(png, source_id) for png, source_id in zip(pngs, source_ids)]
    self._wait()  # one shard written while the next is decoded: at most two in memory
    self._writing = self._writer.submit(encoding.write_tfrecord_gz, path, records)
    yield len(source_ids)

  def _wait(self):
    """Waits for the shard being written; its error, if any, is raised here."""
    writing, self._writing = self._writing, None
    if writing is not None:
      writing.result()

  def finish_bundle(self):
    self._wait()

  def teardown(self):
    if self._writer is not None:
      self._writer.shutdown()


class WriteArrayShard(_WriteShard):
  """Images = (raw file of uint8 images of `image_shape`, first image, end): read, not mapped,
  so that a worker's memory holds one shard, not every page of the file it has touched."""

  def __init__(self, encoder: ExampleEncoder, plan_path: str,
               image_shape: Tuple[int, int, int]):
    super().__init__(encoder, plan_path)
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

  def __init__(self, encoder: ExampleEncoder, plan_path: str, image_size: Tuple[int, int]):
    super().__init__(encoder, plan_path)
    self._image_size = tuple(image_size)

  def _load(self, images: List[str]) -> np.ndarray:
    return np.stack([sources.load_image(path, self._image_size) for path in images])
