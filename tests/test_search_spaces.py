"""Search spaces per model family, and the checks on imported hyperparameters."""
import json

import keras_tuner
import pytest

from modules import search_spaces, tuner
from base.configs import TrainingConfig, TuningConfig
from base.errors import UserError


def test_transfer_space_adds_fine_tune_layers_and_scratch_space_does_not():
  transfer = {p.name for p in search_spaces.space_of('mobilenet').space}
  scratch = {p.name for p in search_spaces.space_of('resnet').space}
  assert {'learning_rate', 'optimizer', 'batch_size', 'dropout', 'weight_decay', 'augment',
          'fine_tune_layers'} <= transfer
  assert 'fine_tune_layers' not in scratch and 'dropout' in scratch
  assert 'dropout' not in {p.name for p in search_spaces.space_of('simple_cnn').space}


def test_every_value_names_a_config_field_and_applies():
  hp = search_spaces.space_of('mobilenet')
  values = {**hp.values, 'learning_rate': 0.01, 'fine_tune_layers': 'all', 'tuner/epochs': 3}
  config = search_spaces.apply(TrainingConfig(model='mobilenet'), values)
  assert config.learning_rate == 0.01 and config.fine_tune_layers == 'all'
  fields = set(TrainingConfig.__dataclass_fields__)
  assert {p.name for p in hp.space} - {search_spaces.FAMILY} <= fields


@pytest.mark.parametrize('change,message', [
    ({'family': 'transfer'}, "of the 'transfer' family cannot train 'resnet'"),
    ({'learning_rate': 5.0}, r'learning_rate=5.0 is outside \[0.0001, 0.3\]'),
    ({'optimizer': 'lbfgs'}, "optimizer='lbfgs' is not one of"),
    ({'momentum_of_doom': 1}, "unknown hyperparameter 'momentum_of_doom'"),
])
def test_bad_values_are_refused(change, message):
  values = {**search_spaces.space_of('resnet').values, **change}
  with pytest.raises(ValueError, match=message):
    search_spaces.check_values(values, 'resnet', 'file')


def _saved(tmp_path, model, **changes):
  hp = search_spaces.space_of(model)
  for name, value in changes.items():
    hp.values[name] = value
  path = tmp_path / 'best_hyperparameters.txt'
  path.write_text(json.dumps(hp.get_config()))
  return str(path)


def test_tuning_config_checks(tmp_path):
  with pytest.raises(UserError, match='--tune grid: unknown tuner'):
    tuner.check_tuning_config(TuningConfig(tuner='grid'), 'resnet')
  with pytest.raises(UserError, match='--tuner-trials 0: must be 1 or more'):
    tuner.check_tuning_config(TuningConfig(tuner='random', tuner_trials=0), 'resnet')
  with pytest.raises(UserError, match="'transfer' family cannot train 'resnet'"):
    tuner.check_tuning_config(TuningConfig(hyperparameters=_saved(tmp_path, 'mobilenet')),
                              'resnet')
  with pytest.raises(UserError, match='No such file'):
    tuner.check_tuning_config(TuningConfig(hyperparameters=str(tmp_path / 'none.txt')), 'resnet')
  (tmp_path / 'junk.txt').write_text('{"not": "hyperparameters"}')
  with pytest.raises(UserError, match='not a saved KerasTuner search result'):
    tuner.check_tuning_config(TuningConfig(hyperparameters=str(tmp_path / 'junk.txt')), 'resnet')
  tuner.check_tuning_config(TuningConfig(hyperparameters=str(tmp_path)), 'mobilenet')  # folder


def test_staged_file_is_alone_in_its_folder(tmp_path):
  path = _saved(tmp_path, 'resnet', learning_rate=0.02)
  folder = tuner.stage_hyperparameters(path, str(tmp_path / 'out'))
  assert [p.name for p in (tmp_path / 'out').rglob('*') if p.is_file()] == [
      'best_hyperparameters.txt']
  assert keras_tuner.HyperParameters.from_config(json.loads(
      open(f'{folder}/best_hyperparameters.txt').read())).values['learning_rate'] == 0.02
