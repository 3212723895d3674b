"""Helpers for end-to-end tests: run the real pipeline with LocalDagRunner, read artifacts back."""
import glob
import os
from typing import Dict, List

import tensorflow as tf
from ml_metadata.metadata_store import metadata_store
from tfx import v1 as tfx

from base.configs import PipelineConfig
from pipeline.data import resolve_data
from pipeline.pipeline import check_config, create_pipeline


def run_pipeline(config: PipelineConfig):
  """Resolves the data, runs the pipeline; returns (resolved config, split sizes)."""
  data, sizes = resolve_data(config.data)
  config = check_config(config.replace(data=data))
  connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(
      config.runner.metadata_path)
  tfx.orchestration.LocalDagRunner().run(create_pipeline(config, connection))
  return config, sizes


def store_for(config: PipelineConfig) -> metadata_store.MetadataStore:
  return metadata_store.MetadataStore(
      tfx.orchestration.metadata.sqlite_metadata_connection_config(config.runner.metadata_path))


def latest_artifact(config: PipelineConfig, type_name: str, producer: str = ''):
  """The newest artifact of a type (made by the component whose id is `producer`, if given)."""
  artifacts = [a for a in store_for(config).get_artifacts_by_type(type_name)
               if not producer or f'/{producer}/' in a.uri]
  assert artifacts, f'no {type_name} artifact of {producer or "any component"} in ML Metadata'
  return max(artifacts, key=lambda a: a.id)


def read_split(uri: str, split: str) -> List[tf.train.Example]:
  files = sorted(glob.glob(os.path.join(uri, f'Split-{split}', '*')))
  assert files, f'no files in split {split} of {uri}'
  return [tf.train.Example.FromString(r.numpy())
          for r in tf.data.TFRecordDataset(files, compression_type='GZIP')]


def feature(example: tf.train.Example, key: str):
  f = example.features.feature[key]
  return f.bytes_list.value[0] if f.HasField('bytes_list') else f.int64_list.value[0]


EXAMPLE_GEN = 'Cifar100ExampleGen'
TRANSFORM = 'Transform'


def examples_by_split(config: PipelineConfig) -> Dict[str, List[tf.train.Example]]:
  artifact = latest_artifact(config, 'Examples', EXAMPLE_GEN)
  return {split: read_split(artifact.uri, split) for split in ('train', 'eval', 'test')}


def model_dirs(config: PipelineConfig):
  """(Model artifact dir, ModelRun artifact dir) of the newest Trainer run."""
  return (latest_artifact(config, 'Model').uri, latest_artifact(config, 'ModelRun').uri)


def serialized_split(config: PipelineConfig, split: str, producer: str = EXAMPLE_GEN) -> List[bytes]:
  """The serialized records of a split of the Examples that `producer` wrote."""
  artifact = latest_artifact(config, 'Examples', producer)
  files = sorted(glob.glob(os.path.join(artifact.uri, f'Split-{split}', '*')))
  return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type='GZIP')]
