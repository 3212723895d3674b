"""Curated schema and the validation gate that stops a pipeline on anomalous data.

SchemaGen infers a schema from the statistics; `CuratedSchemaGen` tightens it with what we know
for certain (the feature set, one value of each per example, labels in [0, N-1], the team's class
names). `ValidationGate` fails the run with a readable message when ExampleValidator found
anomalies, so no model is ever trained on data that broke the contract.
"""
import json
import os
from typing import List, Sequence

from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils

from base import constants
from base.errors import UserError

SCHEMA_FILE = 'schema.pbtxt'  # the name SchemaGen writes and Transform/Trainer read
ANOMALIES_FILE = 'SchemaDiff.pb'  # the name ExampleValidator writes per split


def curate_schema(schema: schema_pb2.Schema, class_names: Sequence[str]) -> schema_pb2.Schema:
  """The inferred schema tightened to the data contract (a new proto; the input is unchanged)."""
  curated = schema_pb2.Schema()
  curated.CopyFrom(schema)
  known = set(constants.RAW_FEATURE_KEYS)
  missing = known - {f.name for f in curated.feature}
  if missing:
    raise UserError(f'the examples lack the features {sorted(missing)}')
  kept = [f for f in curated.feature if f.name in known]
  del curated.feature[:]
  curated.feature.extend(kept)
  for feature in curated.feature:
    feature.presence.min_fraction = 1.0
    feature.presence.min_count = 1
    feature.ClearField('value_count')
    feature.shape.Clear()
    feature.shape.dim.add().size = 1  # exactly one value per example
  label = _feature(curated, constants.LABEL_KEY)
  label.type = schema_pb2.INT
  label.int_domain.Clear()
  label.int_domain.min = 0
  label.int_domain.max = len(class_names) - 1
  label.int_domain.is_categorical = True
  _feature(curated, constants.IMAGE_KEY).type = schema_pb2.BYTES
  name = _feature(curated, constants.LABEL_NAME_KEY)
  name.ClearField('domain')
  name.ClearField('string_domain')
  name.string_domain.name = constants.LABEL_NAME_KEY
  name.string_domain.value.extend(class_names)
  # Every value must be one of the team's classes, not just most of them.
  name.distribution_constraints.min_domain_mass = 1.0
  _keep_only_domains_in_use(curated)
  return curated


def _feature(schema: schema_pb2.Schema, name: str) -> schema_pb2.Feature:
  return next(f for f in schema.feature if f.name == name)


def _keep_only_domains_in_use(schema: schema_pb2.Schema) -> None:
  used = {f.domain for f in schema.feature if f.HasField('domain')}
  kept = [d for d in schema.string_domain if d.name in used]
  del schema.string_domain[:]
  schema.string_domain.extend(kept)


def describe_anomalies(anomalies_by_split: dict) -> List[str]:
  """One line per anomalous feature: `split: feature: short description`."""
  lines = []
  for split, anomalies in sorted(anomalies_by_split.items()):
    for feature, info in sorted(anomalies.anomaly_info.items()):
      lines.append(f'{split}: {feature}: {info.short_description or info.description}')
    if anomalies.HasField('dataset_anomaly_info'):
      info = anomalies.dataset_anomaly_info
      lines.append(f'{split}: (dataset): {info.short_description or info.description}')
  return lines


@component
def CuratedSchemaGen(  # pylint: disable=invalid-name
    schema: InputArtifact[standard_artifacts.Schema],
    curated_schema: OutputArtifact[standard_artifacts.Schema],
    class_names: Parameter[str]):
  """Writes the inferred schema tightened to the data contract (class_names: a JSON list)."""
  inferred = io_utils.parse_pbtxt_file(os.path.join(schema.uri, SCHEMA_FILE), schema_pb2.Schema())
  io_utils.write_pbtxt_file(
      os.path.join(curated_schema.uri, SCHEMA_FILE),
      curate_schema(inferred, json.loads(class_names)))


@component
def ValidationGate(  # pylint: disable=invalid-name
    anomalies: InputArtifact[standard_artifacts.ExampleAnomalies]):
  """Fails the pipeline, naming each problem, when ExampleValidator reported anomalies."""
  found = {}
  for split in artifact_utils.decode_split_names(anomalies.split_names):
    path = os.path.join(artifact_utils.get_split_uri([anomalies], split), ANOMALIES_FILE)
    if fileio.exists(path):
      found[split] = anomalies_pb2.Anomalies.FromString(io_utils.read_bytes_file(path))
  problems = describe_anomalies(found)
  if problems:
    raise UserError(f'data validation found {len(problems)} anomalies ({"; ".join(problems)}); '
                    f'details: {anomalies.uri}')
