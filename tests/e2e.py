"""Helpers for end-to-end tests: run the real pipeline with LocalDagRunner, read artifacts back."""
import glob
import os
from typing import Dict, List

import tensorflow as tf
from ml_metadata.metadata_store import metadata_store
from tfx import v1 as tfx

from pipeline.configs import PipelineConfig
from pipeline.data import resolve_data
from pipeline.pipeline import create_pipeline


def run_pipeline(config: PipelineConfig):
  """Resolves the data, runs the pipeline; returns (resolved config, split sizes)."""
  data, sizes = resolve_data(config.data)
  config = config.replace(data=data)
  connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(
      config.runner.metadata_path)
  tfx.orchestration.LocalDagRunner().run(create_pipeline(config, connection))
  return config, sizes


def store_for(config: PipelineConfig) -> metadata_store.MetadataStore:
  return metadata_store.MetadataStore(
      tfx.orchestration.metadata.sqlite_metadata_connection_config(config.runner.metadata_path))


def latest_artifact(config: PipelineConfig, type_name: str):
  artifacts = store_for(config).get_artifacts_by_type(type_name)
  assert artifacts, f'no {type_name} artifact in ML Metadata'
  return max(artifacts, key=lambda a: a.id)


def read_split(uri: str, split: str) -> List[tf.train.Example]:
  files = sorted(glob.glob(os.path.join(uri, f'Split-{split}', '*')))
  assert files, f'no files in split {split} of {uri}'
  return [tf.train.Example.FromString(r.numpy())
          for r in tf.data.TFRecordDataset(files, compression_type='GZIP')]


def feature(example: tf.train.Example, key: str):
  f = example.features.feature[key]
  return f.bytes_list.value[0] if f.HasField('bytes_list') else f.int64_list.value[0]


def examples_by_split(config: PipelineConfig) -> Dict[str, List[tf.train.Example]]:
  artifact = latest_artifact(config, 'Examples')
  return {split: read_split(artifact.uri, split) for split in ('train', 'eval', 'test')}
