"""Helpers for end-to-end tests: run the real pipeline (or its data part) with LocalDagRunner, read
artifacts and executions back from ML Metadata."""
import glob
import os
from typing import Dict, List, Optional, Sequence

import tensorflow as tf
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from base import constants
from base.configs import PipelineConfig
from pipeline import runs
from pipeline.data import resolve_data
from pipeline.pipeline import check_config, create_pipeline

# ExampleGen .. ValidationGate: what the data tests need, without Transform, training or evaluation.
DATA_COMPONENTS = (constants.EXAMPLE_GEN, constants.STATISTICS_GEN, constants.SCHEMA_GEN,
                   constants.CURATED_SCHEMA_GEN, constants.EXAMPLE_VALIDATOR,
                   constants.VALIDATION_GATE)


def subgraph(pipeline: tfx.dsl.Pipeline, node_ids: Sequence[str]) -> tfx.dsl.Pipeline:
  """The components of `pipeline` whose ids are in `node_ids` (which must hold their upstream
  nodes), wired exactly as `create_pipeline` wired them, as a pipeline of their own with the same
  name, root, metadata, cache setting and Beam args: a later full run reuses their cached
  executions."""
  kept = [c for c in pipeline.components if c.id in node_ids]
  missing = set(node_ids) - {c.id for c in kept}
  assert not missing, f'the pipeline has no components {sorted(missing)}'
  for component in kept:
    for downstream in list(component.downstream_nodes):
      if downstream.id not in node_ids:
        component.remove_downstream_node(downstream)
  return tfx.dsl.Pipeline(
      pipeline_name=pipeline.pipeline_info.pipeline_name,
      pipeline_root=pipeline.pipeline_info.pipeline_root,
      components=kept,
      enable_cache=pipeline.enable_cache,
      metadata_connection_config=pipeline.metadata_connection_config)
  # No beam_pipeline_args: the first Pipeline already gave each component its own.


def resolve(config: PipelineConfig):
  """The preflight of `local_runner.py`: (resolved and checked config, split sizes)."""
  data, sizes = resolve_data(config.data)
  return check_config(config.replace(data=data)), sizes


def connection(config: PipelineConfig):
  return tfx.orchestration.metadata.sqlite_metadata_connection_config(
      config.runner.metadata_path)


def run_resolved(config: PipelineConfig, only: Optional[Sequence[str]] = None) -> None:
  """Runs the pipeline of a resolved config (only the components `only`, if given)."""
  pipeline = create_pipeline(config, connection(config))
  tfx.orchestration.LocalDagRunner().run(subgraph(pipeline, only) if only else pipeline)


def run_pipeline(config: PipelineConfig, only: Optional[Sequence[str]] = None):
  """Resolves the data, runs the pipeline (or the components `only`); returns (resolved config,
  split sizes)."""
  config, sizes = resolve(config)
  run_resolved(config, only)
  return config, sizes


def run_data_components(config: PipelineConfig):
  """ExampleGen .. ValidationGate only; returns (resolved config, split sizes)."""
  return run_pipeline(config, only=DATA_COMPONENTS)


def store_for(config: PipelineConfig) -> metadata_store.MetadataStore:
  return metadata_store.MetadataStore(connection(config))


def latest_artifact(config: PipelineConfig, type_name: str, producer: str = ''):
  """The newest artifact of a type (output by the component whose id is `producer`, if given), as
  ML Metadata's proto; `pipeline.runs.latest_artifact` picks it."""
  store = store_for(config)
  found = runs.latest_artifact(store, type_name, producer)
  assert found, f'no {type_name} artifact of {producer or "any component"} in ML Metadata'
  return store.get_artifacts_by_id([found['id']])[0]


def latest_run_executions(config: PipelineConfig) -> Dict[str, metadata_store_pb2.Execution]:
  """{component id: execution} of the newest pipeline run in ML Metadata, read through its
  'pipeline_run' context and each execution's 'node' context (named '<pipeline>.<component>')."""
  store = store_for(config)
  runs = store.get_contexts_by_type('pipeline_run')
  assert runs, 'no pipeline run in ML Metadata'
  latest = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
  by_node = {}
  for execution in store.get_executions_by_context(latest.id):
    nodes = [c.name for c in store.get_contexts_by_execution(execution.id)
             if c.type_id == store.get_context_type('node').id]
    assert len(nodes) == 1, nodes
    by_node[nodes[0].split('.', 1)[1]] = execution
  return by_node


def execution_states(config: PipelineConfig) -> Dict[str, str]:
  """{component id: state name, e.g. 'COMPLETE', 'CACHED', 'FAILED'} of the newest run."""
  return {node: metadata_store_pb2.Execution.State.Name(e.last_known_state)
          for node, e in latest_run_executions(config).items()}


def read_split(uri: str, split: str) -> List[tf.train.Example]:
  files = sorted(glob.glob(os.path.join(uri, f'Split-{split}', '*')))
  assert files, f'no files in split {split} of {uri}'
  return [tf.train.Example.FromString(r.numpy())
          for r in tf.data.TFRecordDataset(files, compression_type='GZIP')]


def feature(example: tf.train.Example, key: str):
  f = example.features.feature[key]
  return f.bytes_list.value[0] if f.HasField('bytes_list') else f.int64_list.value[0]


EXAMPLE_GEN = constants.EXAMPLE_GEN
TRANSFORM = constants.TRANSFORM


def examples_by_split(config: PipelineConfig) -> Dict[str, List[tf.train.Example]]:
  artifact = latest_artifact(config, 'Examples', EXAMPLE_GEN)
  return {split: read_split(artifact.uri, split) for split in constants.SPLITS}


def model_dirs(config: PipelineConfig):
  """(Model artifact dir, ModelRun artifact dir) of the newest Trainer run."""
  return (latest_artifact(config, 'Model').uri, latest_artifact(config, 'ModelRun').uri)


def serialized_split(config: PipelineConfig, split: str, producer: str = EXAMPLE_GEN) -> List[bytes]:
  """The serialized records of a split of the Examples that `producer` wrote."""
  artifact = latest_artifact(config, 'Examples', producer)
  files = sorted(glob.glob(os.path.join(artifact.uri, f'Split-{split}', '*')))
  return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type='GZIP')]


def evaluated_accuracy(config: PipelineConfig) -> float:
  """Overall sparse_categorical_accuracy of the newest ModelEvaluation (the test split)."""
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  result = tfma.load_eval_result(latest_artifact(config, 'ModelEvaluation').uri)
  overall = dict(result.slicing_metrics)[()]['']['']
  return overall['sparse_categorical_accuracy']['doubleValue']
