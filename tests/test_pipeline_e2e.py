"""The whole pipeline on generated data, once, and what each component left behind."""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from modules import inputs
from modules import trainer as trainer_module
from base import constants
from tests import e2e

pytestmark = pytest.mark.e2e


def _cpu_flags() -> set:
  """The first CPU's feature flags in /proc/cpuinfo (read here, not by base/machine.py)."""
  with open('/proc/cpuinfo') as f:
    line = next(line for line in f if line.startswith('flags'))
  return set(line.split(':', 1)[1].split())


def test_training_stats_next_to_the_model(pipeline_run):
  config, sizes = pipeline_run
  model_dir, _ = e2e.model_dirs(config)
  with open(os.path.join(model_dir, constants.TRAINING_STATS_FILE)) as f:
    stats = json.load(f)
  assert stats['model'] == 'simple_cnn' and stats['epochs'] == 2
  assert len(stats['epoch_time_sec']) == 2 and all(t > 0 for t in stats['epoch_time_sec'])
  assert stats['ms_per_step'] > 0 and stats['examples_per_sec'] > 0
  assert stats['total_params'] == 121_920 + 65 * 20 == stats['trainable_params']
  assert stats['train_examples'] == sizes['train'] and stats['eval_examples'] == sizes['eval']
  assert stats['steps_per_epoch'] == [5, 5]  # ceil(140 / 32)
  # tests/conftest.py hides GPUs: a CPU run on any machine.
  assert stats['device_type'] == 'CPU' and stats['peak_host_memory_mib'] > 0
  # The default --precision auto on a CPU: mixed_bfloat16 where the CPU has native bfloat16
  # (README: AVX512-BF16 or AMX), else float32; the flags read here from /proc/cpuinfo.
  assert stats['precision'] == ('mixed_bfloat16' if _cpu_flags() & {'avx512_bf16', 'amx_bf16'}
                                else 'float32')
  assert len(stats['val_accuracy']) == 2


def test_model_carries_its_provenance(pipeline_run):
  config, _ = pipeline_run
  model_dir, run_dir = e2e.model_dirs(config)
  extra = os.path.join(model_dir, 'Format-Serving', 'assets.extra')
  with open(os.path.join(extra, constants.CLASSES_FILE)) as f:
    assert json.load(f)['class_names'] == list(config.data.class_names)
  with open(os.path.join(extra, 'training_config.json')) as f:
    training_config = json.load(f)
  assert training_config['model'] == 'simple_cnn' and training_config['tta'] == 'flip'
  with open(os.path.join(extra, 'versions.json')) as f:
    assert json.load(f)['tensorflow'] == tf.__version__
  assert os.listdir(os.path.join(run_dir, 'logs'))  # TensorBoard logs in the ModelRun artifact


def test_serving_signature_matches_the_training_path(pipeline_run):
  """Raw PNG examples through serving_default == the Keras model on what the Trainer feeds it."""
  config, _ = pipeline_run
  model_dir, run_dir = e2e.model_dirs(config)
  loaded = tf.saved_model.load(os.path.join(model_dir, 'Format-Serving'))
  serve = loaded.signatures[constants.SERVING_SIGNATURE]
  transform = loaded.signatures[constants.TRANSFORM_SIGNATURE]
  raw = e2e.serialized_split(config, constants.EVAL_SPLIT)
  # Serving examples carry only the image.
  images_only = [tf.train.Example(features=tf.train.Features(feature={
      constants.IMAGE_KEY: tf.train.Example.FromString(r).features.feature[constants.IMAGE_KEY]
  })).SerializeToString() for r in raw]
  served = serve(examples=tf.constant(images_only))
  probabilities = served[constants.PROBABILITIES_OUTPUT].numpy()
  assert probabilities.shape == (len(raw), 20)
  np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)

  # The training-time path: the Trainer's input code on ExampleGen's eval split through
  # Transform's graph (Transform materialises nothing), into the saved Keras model.
  tf_transform_output = tft.TFTransformOutput(
      e2e.latest_artifact(config, 'TransformGraph', e2e.TRANSFORM).uri)
  eval_files = [os.path.join(e2e.latest_artifact(config, 'Examples', e2e.EXAMPLE_GEN).uri,
                             f'Split-{constants.EVAL_SPLIT}', '*')]
  batches = inputs.make_dataset(eval_files, tf_transform_output.transformed_feature_spec(), 64,
                                False, len(raw), raw=inputs.raw_examples(tf_transform_output))
  materialized_images = np.concatenate([images for images, _ in batches])
  assert materialized_images.shape == (len(raw), 32, 32, 3)
  via_signature = transform(examples=tf.constant(raw))[constants.IMAGE_XF_KEY].numpy()
  assert via_signature.dtype == np.int64
  via_signature = via_signature.astype(np.float32)  # the pixels, as the Trainer's batches hold them
  # Same preprocessing at serving time as in training (compared as sets: files are interleaved).
  assert sorted(i.tobytes() for i in via_signature) == sorted(
      i.tobytes() for i in materialized_images)
  model = keras.models.load_model(os.path.join(run_dir, trainer_module.KERAS_MODEL_FILE),
                                  compile=False)
  # The default --tta flip: the mean of the softmax over each image and its mirror image.
  mirrored = materialized_images[:, :, ::-1, :]
  expected = ((tf.nn.softmax(model(materialized_images)) + tf.nn.softmax(model(mirrored))) /
              2).numpy()
  by_image = {image.tobytes(): p for image, p in zip(materialized_images, expected)}
  # Under mixed_bfloat16 (--precision auto on this project's CPUs) the SavedModel's graph and
  # the eager Keras model round differently: ~3e-4 apart, against 1e-6 in float32.
  mixed = any(layer.compute_dtype != 'float32' for layer in model.layers)
  atol = 2e-3 if mixed else 1e-5
  np.testing.assert_allclose(probabilities, [by_image[i.tobytes()] for i in via_signature],
                             atol=atol)
  np.testing.assert_array_equal(
      served[constants.CLASS_NAME_OUTPUT].numpy().astype(str),
      np.array(config.data.class_names)[probabilities.argmax(axis=1)])


def _evaluation(config):
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  return tfma.load_eval_result(e2e.latest_artifact(config, 'ModelEvaluation').uri)


def _slice_metrics(result):
  """{slice key: {metric: value}} of a TFMA result."""
  return {key: {name: next(iter(value.values())) for name, value in metrics[''][''].items()}
          for key, metrics in result.slicing_metrics}


def _served_test_predictions(config):
  model_dir, _ = e2e.model_dirs(config)
  serve = tf.saved_model.load(os.path.join(model_dir, 'Format-Serving')).signatures[
      constants.SERVING_SIGNATURE]
  raw = e2e.serialized_split(config, constants.TEST_SPLIT)
  predicted = serve(examples=tf.constant(raw))[constants.CLASS_ID_OUTPUT].numpy()
  labels = np.array([e2e.feature(tf.train.Example.FromString(r), constants.LABEL_KEY)
                     for r in raw])
  return raw, labels, predicted


def test_evaluation_slices_match_recomputed_predictions(pipeline_run):
  config, sizes = pipeline_run
  metrics = _slice_metrics(_evaluation(config))
  names = config.data.class_names
  class_slices = {key[0][1]: m for key, m in metrics.items()
                  if key and key[0][0] == constants.LABEL_NAME_KEY}
  assert sorted(class_slices) == sorted(names)
  assert {key[0][1] for key in metrics if key and key[0][0] == constants.COARSE_LABEL_KEY} == set(
      config.data.coarse_names)
  overall = metrics[()]
  assert overall['example_count'] == sizes['test']

  _, labels, predicted = _served_test_predictions(config)
  assert overall['sparse_categorical_accuracy'] == pytest.approx(np.mean(labels == predicted))
  for label, name in enumerate(names):
    members = labels == label
    assert class_slices[name]['example_count'] == members.sum()
    assert class_slices[name]['sparse_categorical_accuracy'] == pytest.approx(
        np.mean(predicted[members] == label)), name
  # Per-class accuracies weighted by their counts give the overall accuracy.
  weighted = sum(m['sparse_categorical_accuracy'] * m['example_count']
                 for m in class_slices.values()) / overall['example_count']
  assert weighted == pytest.approx(overall['sparse_categorical_accuracy'])


def test_confusion_matrix_matches_recomputed_predictions(pipeline_run):
  from pipeline import evaluation  # pylint: disable=g-import-not-at-top
  config, _ = pipeline_run
  result = _evaluation(config)
  overall_plot = next(p for key, p in result.plots if key == ())
  matrix_proto = overall_plot['']['']['multiClassConfusionMatrixAtThresholds']['matrices'][0]
  n = len(config.data.class_names)
  matrix = np.zeros((n, n))
  for entry in matrix_proto['entries']:
    matrix[entry.get('actualClassId', 0), entry.get('predictedClassId', 0)] = entry.get(
        'numWeightedExamples', 0)
  _, labels, predicted = _served_test_predictions(config)
  expected = np.zeros((n, n))
  np.add.at(expected, (labels, predicted), 1)
  np.testing.assert_array_equal(matrix, expected)
  precision, recall = evaluation.macro_precision_recall(matrix)
  # Recomputed from the served predictions: the mean over classes of right / predicted as the
  # class (classes never predicted count as 0, sklearn's zero_division=0) and of right / members.
  per_class_precision = [np.sum((predicted == c) & (labels == c)) / np.sum(predicted == c)
                         if np.any(predicted == c) else 0.0 for c in range(n)]
  assert precision == pytest.approx(np.mean(per_class_precision))
  assert recall == pytest.approx(np.mean([np.mean(predicted[labels == c] == c)
                                          for c in range(n)]))


def test_blessed_model_was_pushed_and_predict_agrees(pipeline_run, cifar_archive, tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  config, _ = pipeline_run
  blessing = e2e.latest_artifact(config, 'ModelBlessing')
  assert blessing.custom_properties['blessed'].int_value == 1  # threshold 0, first model
  versions = os.listdir(config.runner.serving_model_dir)
  assert len(versions) == 1
  # What was pushed is the Trainer's model, byte for byte.
  model_dir, _ = e2e.model_dirs(config)
  with open(os.path.join(model_dir, 'Format-Serving', 'saved_model.pb'), 'rb') as f:
    trained = f.read()
  with open(os.path.join(config.runner.serving_model_dir, versions[0], 'saved_model.pb'),
            'rb') as f:
    assert f.read() == trained
  raw, _, predicted = _served_test_predictions(config)
  paths = []
  for i, record in enumerate(raw[:6]):
    png = e2e.feature(tf.train.Example.FromString(record), constants.IMAGE_KEY)
    paths.append(str(tmp_path / f'{i}.png'))
    (tmp_path / f'{i}.png').write_bytes(png)
  # A bigger PNG of the same picture is resized back to 32x32 as the training images were.
  Image.open(paths[0]).resize((96, 96), Image.NEAREST).save(tmp_path / 'big.png')
  (tmp_path / 'broken.jpg').write_bytes(b'not an image')
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  result = subprocess.run(
      [sys.executable, '-m', 'pipeline.predict', *paths, str(tmp_path / 'big.png'),
       str(tmp_path / 'broken.jpg'), '--output-dir', config.runner.output_dir, '--top-k', '3',
       '--json'], capture_output=True, text=True, cwd=root, timeout=300)
  assert result.returncode == 1  # one file failed
  assert 'broken.jpg: not a readable image' in result.stderr
  import json as json_lib  # pylint: disable=g-import-not-at-top
  lines = [json_lib.loads(line) for line in result.stdout.splitlines()]
  assert len(lines) == 7 and all(len(line['top_k']) == 3 for line in lines)
  names = config.data.class_names
  assert [line['top_k'][0]['class'] for line in lines[:6]] == [names[p] for p in predicted[:6]]
  assert lines[6]['top_k'][0]['class'] == names[predicted[0]]


def test_blessing_follows_the_threshold(pipeline_run, tmp_path):
  """Re-running with a threshold above the model's accuracy: not blessed, not pushed; with the
  same model and no threshold: blessed again (equal to the baseline is not worse)."""
  import shutil  # pylint: disable=g-import-not-at-top
  from base.configs import EvaluationConfig, RunnerConfig  # pylint: disable=g-import-not-at-top
  config, _ = pipeline_run
  accuracy = _slice_metrics(_evaluation(config))[()]['sparse_categorical_accuracy']
  assert 0.01 < accuracy < 0.99  # so that both thresholds below lie strictly inside (0, 1)
  # A copy of the metadata: the rerun reuses the cached upstream artifacts, and the shared run's
  # own metadata stays as other tests expect it.
  runner = RunnerConfig(output_dir=str(tmp_path), pipeline_name=config.runner.pipeline_name)
  shutil.copy(config.runner.metadata_path, runner.metadata_path)
  strict = config.replace(runner=runner,
                          evaluation=EvaluationConfig(min_accuracy=accuracy + 0.01))
  e2e.run_pipeline(strict)
  assert e2e.latest_artifact(strict, 'ModelBlessing').custom_properties['blessed'].int_value == 0
  assert not os.path.exists(runner.serving_model_dir)
  lenient = strict.replace(evaluation=EvaluationConfig(min_accuracy=max(accuracy - 0.01, 0.0)))
  e2e.run_pipeline(lenient)
  assert e2e.latest_artifact(lenient, 'ModelBlessing').custom_properties['blessed'].int_value == 1
  assert len(os.listdir(runner.serving_model_dir)) == 1
