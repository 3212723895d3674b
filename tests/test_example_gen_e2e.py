"""ExampleGen -> StatisticsGen -> SchemaGen -> curated schema -> ExampleValidator, for real."""
import collections
import io
import json
import os

import numpy as np
import pytest
import tensorflow_data_validation as tfdv
from PIL import Image
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.types import standard_artifacts
from tfx.utils import io_utils

from components import data_validation
from datasources import sources
from base import constants
from base.configs import DataConfig, PipelineConfig, RunnerConfig
from base.errors import UserError
from tests import e2e, fixtures

pytestmark = pytest.mark.e2e


def decode(png: bytes) -> np.ndarray:
  return np.asarray(Image.open(io.BytesIO(png)))


@pytest.fixture(scope='module')
def archive_run(cifar_archive, tmp_path_factory):
  path, pixels = cifar_archive
  config = PipelineConfig(
      data=DataConfig(data=path, trust_data=True, team_seed=1, num_classes=20),
      runner=RunnerConfig(output_dir=str(tmp_path_factory.mktemp('run'))))
  config, sizes = e2e.run_pipeline(config)
  return config, sizes, pixels, e2e.examples_by_split(config)


def test_examples_hold_only_the_team_classes(archive_run):
  config, sizes, _, splits = archive_run
  data = config.data
  for split, examples in splits.items():
    assert len(examples) == sizes[split], split
    for ex in examples:
      label = e2e.feature(ex, constants.LABEL_KEY)
      assert 0 <= label < 20
      assert e2e.feature(ex, constants.LABEL_NAME_KEY).decode() == data.class_names[label]
      assert e2e.feature(ex, constants.FINE_LABEL_KEY) == data.fine_label_ids[label]
      assert e2e.feature(ex, constants.COARSE_LABEL_KEY).decode() == data.coarse_names[label]
      assert set(ex.features.feature) == set(constants.RAW_FEATURE_KEYS)


def test_images_equal_the_source_pixels(archive_run):
  config, _, pixels, splits = archive_run
  for member, split_names in (('train', ('train', 'eval')), ('test', ('test',))):
    got = collections.defaultdict(set)
    for split in split_names:
      for ex in splits[split]:
        got[e2e.feature(ex, constants.FINE_LABEL_KEY)].add(
            decode(e2e.feature(ex, constants.IMAGE_KEY)).tobytes())
    for fine_id in config.data.fine_label_ids:
      want = {img.tobytes() for img in pixels[member][pixels[member + '_fine'] == fine_id]}
      assert got[fine_id] == want, (member, fine_id)


def test_eval_split_is_stratified(archive_run):
  _, _, _, splits = archive_run
  per_class = collections.Counter(e2e.feature(ex, constants.LABEL_KEY) for ex in splits['eval'])
  assert set(per_class.values()) == {sources.holdout_count(8, 0.15)} and len(per_class) == 20


def test_artifacts_recorded_in_metadata(archive_run):
  config = archive_run[0]
  examples = e2e.latest_artifact(config, 'Examples', e2e.EXAMPLE_GEN)
  assert json.loads(examples.properties['split_names'].string_value) == list(constants.SPLITS)
  schema = e2e.latest_artifact(config, 'Schema', 'CuratedSchemaGen')
  parsed = io_utils.parse_pbtxt_file(os.path.join(schema.uri, 'schema.pbtxt'), schema_pb2.Schema())
  label = next(f for f in parsed.feature if f.name == constants.LABEL_KEY)
  assert (label.int_domain.min, label.int_domain.max) == (0, 19)
  anomalies = e2e.latest_artifact(config, 'ExampleAnomalies')
  assert anomalies.uri


def test_validator_flags_data_outside_the_contract_and_the_gate_stops(archive_run, tmp_path):
  config = archive_run[0]
  statistics = e2e.latest_artifact(config, 'ExampleStatistics', 'StatisticsGen')
  stats = tfdv.load_stats_binary(os.path.join(statistics.uri, 'Split-train', 'FeatureStats.pb'))
  inferred = tfdv.infer_schema(stats)
  # A schema for one class fewer: the data now has an out-of-range label and an unknown name.
  schema = data_validation.curate_schema(inferred, config.data.class_names[:-1])
  anomalies = tfdv.validate_statistics(stats, schema)
  lines = data_validation.describe_anomalies({'train': anomalies})
  assert any(line.startswith('train: label:') for line in lines), lines
  assert any(line.startswith('train: label_name:') for line in lines), lines

  artifact = standard_artifacts.ExampleAnomalies()
  artifact.uri = str(tmp_path)
  artifact.split_names = '["train"]'
  os.makedirs(tmp_path / 'Split-train')
  (tmp_path / 'Split-train' / 'SchemaDiff.pb').write_bytes(anomalies.SerializeToString())
  with pytest.raises(UserError, match='data validation found 2 anomalies .*train: label:'):
    data_validation.ValidationGate.test_call(anomalies=artifact)


def test_beam_workers_give_the_same_examples(archive_run, tmp_path):
  config = archive_run[0]
  parallel = config.replace(
      data=DataConfig(data=config.data.data, trust_data=True, team_seed=1, num_classes=20,
                      beam_workers=2),
      runner=RunnerConfig(output_dir=str(tmp_path)))
  parallel, _ = e2e.run_pipeline(parallel)
  one, two = archive_run[3], e2e.examples_by_split(parallel)
  for split in constants.SPLITS:
    assert sorted(e.SerializeToString(deterministic=True) for e in one[split]) == sorted(
        e.SerializeToString(deterministic=True) for e in two[split]), split


def test_image_folder_without_test_dir(tmp_path):
  written = fixtures.write_image_folder(str(tmp_path / 'images'), ['cat', 'dog', 'emu'], 10,
                                        fmt='jpg')
  config = PipelineConfig(data=DataConfig(data=str(tmp_path / 'images')),
                          runner=RunnerConfig(output_dir=str(tmp_path / 'out')))
  config, sizes = e2e.run_pipeline(config)
  splits = e2e.examples_by_split(config)
  assert {k: len(v) for k, v in splits.items()} == sizes == {'train': 21, 'eval': 3, 'test': 6}
  jpeg_pixels = {name: [np.asarray(Image.open(tmp_path / 'images' / 'train' / name / f'{i:04d}.jpg'))
                        for i in range(10)] for name in written['train']}
  test_images = sorted((e2e.feature(ex, constants.LABEL_NAME_KEY).decode(),
                        decode(e2e.feature(ex, constants.IMAGE_KEY)).tobytes())
                       for ex in splits['test'])
  # The test split is the last 2 files of each class, decoded losslessly into PNG.
  assert test_images == sorted((name, jpeg_pixels[name][i].tobytes())
                               for name in ('cat', 'dog', 'emu') for i in (8, 9))
