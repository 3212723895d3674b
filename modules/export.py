"""The exported model: serving signatures over raw tf.Examples, and the provenance it carries.

Two signatures, each taking serialized tf.Examples (`examples`, [None] string):
- `serving_default`: raw examples (the `image` PNG bytes; no label needed) -> the Transform graph
  -> the model -> `probabilities` [B, N], `class_id` [B] and `class_name` [B] of the top class.
- `transform_features`: raw examples -> the transformed features (TFMA's preprocessing step).
The Transform graph travels inside the SavedModel, so serving cannot drift from training.

Test-time augmentation (`--tta`): with 'flip', `probabilities` average the model's softmax over
each image and its mirror image (what the Evaluator, the Pusher's model and `pipeline.predict`
all use); 'none' runs the model once. Training's val_accuracy is measured without it.
"""
import json
import os
from typing import Any, Dict, Sequence

import keras
import tensorflow as tf
import tensorflow_transform as tft

from base import constants

TEST_TIME_AUGMENTATIONS = ('none', 'flip')


def check_tta(tta: str) -> None:
  if tta not in TEST_TIME_AUGMENTATIONS:
    raise ValueError(f"Unknown test-time augmentation {tta!r}; expected one of: "
                     f"{', '.join(TEST_TIME_AUGMENTATIONS)}.")


def predict_probabilities(model: keras.Model, images: tf.Tensor, tta: str = 'none') -> tf.Tensor:
  """Class probabilities [B, N] of the model's logits for images [B, H, W, C], in float32.

  tta 'flip' averages the probabilities of each image and its horizontal mirror.
  """
  check_tta(tta)
  probabilities = tf.nn.softmax(tf.cast(model(images, training=False), tf.float32), axis=-1)
  if tta == 'flip':
    mirrored = model(tf.reverse(images, axis=[2]), training=False)
    probabilities = (probabilities + tf.nn.softmax(tf.cast(mirrored, tf.float32), axis=-1)) / 2
  return probabilities


class ServingModule(tf.Module):
  """Holds the Keras 3 model and the Transform layer; its tf.functions become the signatures."""

  def __init__(self, model: keras.Model, tf_transform_output: tft.TFTransformOutput,
               class_names: Sequence[str], tta: str = 'none'):
    super().__init__()
    check_tta(tta)
    self.model = model
    self._tta = tta
    self.tft_layer = tf_transform_output.transform_features_layer()
    self.class_names = tf.constant(list(class_names))
    raw_spec = tf_transform_output.raw_feature_spec()
    self._raw_spec = raw_spec
    self._serving_spec = {constants.IMAGE_KEY: raw_spec[constants.IMAGE_KEY]}

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name=constants.EXAMPLES_INPUT)])
  def serve(self, examples):
    features = tf.io.parse_example(examples, self._serving_spec)
    transformed = self.tft_layer(features)
    probabilities = predict_probabilities(self.model, transformed[constants.IMAGE_XF_KEY],
                                          self._tta)
    class_id = tf.argmax(probabilities, axis=-1)
    return {
        constants.PROBABILITIES_OUTPUT: probabilities,
        constants.CLASS_ID_OUTPUT: class_id,
        constants.CLASS_NAME_OUTPUT: tf.gather(self.class_names, class_id),
    }

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name=constants.EXAMPLES_INPUT)])
  def transform(self, examples):
    return self.tft_layer(tf.io.parse_example(examples, self._raw_spec))


def export_serving_model(model: keras.Model, tf_transform_output: tft.TFTransformOutput,
                         class_names: Sequence[str], export_dir: str,
                         provenance: Dict[str, Any], tta: str = 'none') -> None:
  """Saves the SavedModel with both signatures and writes provenance files beside its assets."""
  module = ServingModule(model, tf_transform_output, class_names, tta)
  tf.saved_model.save(module, export_dir, signatures={
      constants.SERVING_SIGNATURE: module.serve.get_concrete_function(),
      constants.TRANSFORM_SIGNATURE: module.transform.get_concrete_function(),
  })
  write_provenance(os.path.join(export_dir, constants.PROVENANCE_DIR), provenance)


def write_provenance(directory: str, files: Dict[str, Any]) -> None:
  """Writes each {file name: JSON-serializable value} as an indented JSON file."""
  tf.io.gfile.makedirs(directory)
  for name, value in files.items():
    with tf.io.gfile.GFile(os.path.join(directory, name), 'w') as f:
      json.dump(value, f, indent=2, sort_keys=True)
