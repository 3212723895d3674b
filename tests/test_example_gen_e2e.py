"""ExampleGen -> StatisticsGen -> SchemaGen -> curated schema -> ExampleValidator -> gate, for real:
only those components run (`e2e.run_data_components`); the session's full run reuses them."""
import collections
import io
import json
import os
import pathlib
from typing import Dict

import numpy as np
import pytest
import tensorflow_data_validation as tfdv
from PIL import Image
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx.types import standard_artifacts
from tfx.utils import io_utils

from components import data_validation
from base import constants
from base.configs import DataConfig, PipelineConfig, RunnerConfig
from base.errors import UserError
from tests import conftest, e2e, fixtures

pytestmark = pytest.mark.e2e


def decode(png: bytes) -> np.ndarray:
  return np.asarray(Image.open(io.BytesIO(png)))


@pytest.fixture(scope='module')
def archive_run(data_run, cifar_archive):
  """The session's data run (ExampleGen .. ValidationGate on the generated archive)."""
  config, sizes = data_run
  return config, sizes, cifar_archive[1], e2e.examples_by_split(config)


def expected_sizes(classes: int, train_per_class: int, test_per_class: int,
                   eval_fraction: float) -> Dict[str, int]:
  """Split sizes from the archive's own counts and README's rule: round(fraction * n) of each
  class's training images go to eval."""
  held_out = round(eval_fraction * train_per_class)
  return {'train': classes * (train_per_class - held_out), 'eval': classes * held_out,
          'test': classes * test_per_class}


def test_split_sizes_follow_the_counts_and_fractions(archive_run):
  config, sizes, _, splits = archive_run
  expected = expected_sizes(20, conftest.TRAIN_PER_CLASS, conftest.TEST_PER_CLASS,
                            config.data.eval_fraction)
  assert expected == {'train': 140, 'eval': 20, 'test': 60}  # 8 train, 3 test per class; 0.15
  assert {split: len(examples) for split, examples in splits.items()} == expected
  assert sizes == expected  # the preflight's announced sizes


def test_examples_hold_only_the_team_classes(archive_run):
  config, _, _, splits = archive_run
  data = config.data
  assert len(data.class_names) == 20 and list(data.class_names) == sorted(data.class_names)
  for split, examples in splits.items():
    seen = set()
    for ex in examples:
      assert set(ex.features.feature) == set(constants.RAW_FEATURE_KEYS)
      label = e2e.feature(ex, constants.LABEL_KEY)
      name = e2e.feature(ex, constants.LABEL_NAME_KEY).decode()
      fine = e2e.feature(ex, constants.FINE_LABEL_KEY)
      # Checked against the generator's own CIFAR-100 tables, not the code's resolved config.
      assert name == fixtures.FINE_NAMES[fine], (split, name, fine)
      assert e2e.feature(ex, constants.COARSE_LABEL_KEY).decode() == fixtures.COARSE_NAMES[
          fixtures.COARSE_OF[name]]
      assert name in data.class_names and label == sorted(data.class_names).index(name)
      seen.add(name)
    assert seen == set(data.class_names), split  # every class in every split


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
  config, _, _, splits = archive_run
  per_class = collections.Counter(e2e.feature(ex, constants.LABEL_KEY) for ex in splits['eval'])
  held_out = round(config.data.eval_fraction * conftest.TRAIN_PER_CLASS)  # 1 of 8
  assert per_class == {label: held_out for label in range(20)}


def test_artifacts_recorded_in_metadata(archive_run):
  config = archive_run[0]
  examples = e2e.latest_artifact(config, 'Examples', e2e.EXAMPLE_GEN)
  assert json.loads(examples.properties['split_names'].string_value) == list(constants.SPLITS)
  schema = e2e.latest_artifact(config, 'Schema', 'CuratedSchemaGen')
  parsed = io_utils.parse_pbtxt_file(os.path.join(schema.uri, 'schema.pbtxt'), schema_pb2.Schema())
  label = next(f for f in parsed.feature if f.name == constants.LABEL_KEY)
  assert (label.int_domain.min, label.int_domain.max) == (0, 19)
  # The generated data keeps the contract: ExampleValidator found nothing in any split, and the
  # gate let the run through.
  anomalies = e2e.latest_artifact(config, 'ExampleAnomalies', constants.EXAMPLE_VALIDATOR)
  for split in constants.SPLITS:
    found = anomalies_pb2.Anomalies.FromString(
        (pathlib.Path(anomalies.uri) / f'Split-{split}' / data_validation.ANOMALIES_FILE)
        .read_bytes())
    assert not found.anomaly_info and not found.HasField('dataset_anomaly_info'), split
  # COMPLETE, or CACHED when the session's full run came first and reused it.
  assert e2e.execution_states(config)[constants.VALIDATION_GATE] in ('COMPLETE', 'CACHED')


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
      data=DataConfig(data=config.data.data, trust_data=True, team_seed=config.data.team_seed,
                      num_classes=20, beam_workers=2),
      runner=RunnerConfig(output_dir=str(tmp_path)))
  parallel, _ = e2e.run_pipeline(parallel, only=[constants.EXAMPLE_GEN])
  # Byte-identical files (docs/benchmarks.md): same names, same bytes, whatever the workers.
  uris = [e2e.latest_artifact(c, 'Examples', constants.EXAMPLE_GEN).uri for c in (config, parallel)]
  for split in constants.SPLITS:
    files = [{path.name: path.read_bytes() for path in pathlib.Path(uri, f'Split-{split}').iterdir()}
             for uri in uris]
    assert files[0] and files[0] == files[1], split


def test_image_folder_without_test_dir(tmp_path):
  written = fixtures.write_image_folder(str(tmp_path / 'images'), ['cat', 'dog', 'emu'], 10,
                                        fmt='jpg')
  config = PipelineConfig(data=DataConfig(data=str(tmp_path / 'images')),
                          runner=RunnerConfig(output_dir=str(tmp_path / 'out')))
  config, sizes = e2e.run_data_components(config)
  splits = e2e.examples_by_split(config)
  # 10 files per class: round(0.2 * 10) = 2 to test, then round(0.15 * 8) = 1 to eval.
  test_per_class = round(config.data.test_fraction * 10)
  eval_per_class = round(config.data.eval_fraction * (10 - test_per_class))
  expected = {'train': 3 * (10 - test_per_class - eval_per_class), 'eval': 3 * eval_per_class,
              'test': 3 * test_per_class}
  assert {k: len(v) for k, v in splits.items()} == sizes == expected
  assert e2e.execution_states(config)[constants.VALIDATION_GATE] == 'COMPLETE'
  jpeg_pixels = {name: [np.asarray(Image.open(tmp_path / 'images' / 'train' / name / f'{i:04d}.jpg'))
                        for i in range(10)] for name in written['train']}
  test_images = sorted((e2e.feature(ex, constants.LABEL_NAME_KEY).decode(),
                        decode(e2e.feature(ex, constants.IMAGE_KEY)).tobytes())
                       for ex in splits['test'])
  # The test split is the last 2 files of each class: their JPEG pixels as PIL decodes them,
  # stored losslessly as PNG.
  assert test_images == sorted((name, jpeg_pixels[name][i].tobytes())
                               for name in ('cat', 'dog', 'emu') for i in (8, 9))
