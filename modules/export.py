"""The exported model: serving signatures over raw tf.Examples, and the provenance it carries.

Three signatures:
- `serving_default`: serialized raw tf.Examples (`examples`, [None] string; the `image` PNG bytes,
  no label needed) -> the Transform graph -> the model -> `probabilities` [B, N], `class_id` [B]
  and `class_name` [B] of the top class. The Evaluator (TFMA) scores through it.
- `transform_features`: raw examples -> the transformed features (TFMA's preprocessing step).
- `serving_image_bytes`: encoded images (`image_bytes`, [None] string: PNG or JPEG of any size, as
  TF Serving's and Vertex AI Prediction's REST APIs pass `{"instances": [{"b64": ...}]}`) ->
  decoded to RGB, resized to the stored size the way `pipeline.predict` resizes files, re-encoded
  as the PNG the training images were -> the same path as `serving_default`, same outputs.
The Transform graph travels inside the SavedModel, so serving cannot drift from training.

Test-time augmentation (`--tta`): with 'flip', `probabilities` average the model's softmax over
each image and its mirror image (what the Evaluator, the Pusher's model and `pipeline.predict`
all use); 'flip_shift' over 10 views, the image and its mirror each as it is and shifted by one
pixel up, down, left and right (reflect-padded); 'none' runs the model once. Training's
val_accuracy is measured without it.
"""
import json
import os
from typing import Any, Dict, List, Sequence

import keras
import tensorflow as tf
import tensorflow_transform as tft

from base import constants

def check_tta(tta: str) -> None:
  if tta not in constants.TEST_TIME_AUGMENTATIONS:
    raise ValueError(f"Unknown test-time augmentation {tta!r}; expected one of: "
                     f"{', '.join(constants.TEST_TIME_AUGMENTATIONS)}.")


def tta_views(images: tf.Tensor, tta: str) -> List[tf.Tensor]:
  """The views (each [B, H, W, C]) of images [B, H, W, C] a test-time augmentation averages."""
  check_tta(tta)
  views = [images]
  if tta == 'flip_shift':
    # Content one pixel down, up, right and left; the freed edge mirrors its neighbour, as
    # reflect padding does (sliced, not tf.pad: MirrorPad fails on an empty batch).
    x = images
    views += [tf.concat([x[:, 1:2], x[:, :-1]], axis=1),
              tf.concat([x[:, 1:], x[:, -2:-1]], axis=1),
              tf.concat([x[:, :, 1:2], x[:, :, :-1]], axis=2),
              tf.concat([x[:, :, 1:], x[:, :, -2:-1]], axis=2)]
  if tta != 'none':
    views += [tf.reverse(view, axis=[2]) for view in views]
  return views


def predict_probabilities(model: keras.Model, images: tf.Tensor, tta: str = 'none') -> tf.Tensor:
  """Class probabilities [B, N] of the model's logits for images [B, H, W, C], in float32.

  With a test-time augmentation, the mean of the probabilities over its views (`tta_views`), one
  model call per view (a batch of the views together would hold their activations at once).
  """
  probabilities = [tf.nn.softmax(tf.cast(model(view, training=False), tf.float32), axis=-1)
                   for view in tta_views(images, tta)]
  return tf.add_n(probabilities) / len(probabilities)


def encoded_to_stored_png(encoded: tf.Tensor, size: int) -> tf.Tensor:
  """[B] PNG/JPEG bytes of any size and mode -> [B] PNG bytes of size x size 8-bit RGB images.

  Grey and 16-bit images become 8-bit RGB (`decode_image`; an alpha channel is dropped). Other
  sizes are resized bilinearly with antialiasing, as Pillow's BILINEAR resize in
  `pipeline.predict` does; an image of the stored size keeps its pixels exactly.
  """
  def one(data):
    # JPEG with the accurate integer IDCT, as Pillow decodes (TensorFlow's default is the fast one).
    pixels = tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.io.decode_jpeg(data, channels=3, dct_method='INTEGER_ACCURATE'),
        lambda: tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False))
    pixels = tf.cond(
        tf.reduce_all(tf.shape(pixels)[:2] == size), lambda: pixels,
        lambda: tf.saturate_cast(tf.round(tf.image.resize(
            pixels, [size, size], method='bilinear', antialias=True)), tf.uint8))
    return tf.io.encode_png(tf.ensure_shape(pixels, [size, size, 3]))
  return tf.map_fn(one, encoded, fn_output_signature=tf.TensorSpec([], tf.string))


class ServingModule(tf.Module):
  """Holds the Keras 3 model and the Transform layer; its tf.functions become the signatures."""

  def __init__(self, model: keras.Model, tf_transform_output: tft.TFTransformOutput,
               class_names: Sequence[str], stored_image_size: int, tta: str = 'none'):
    super().__init__()
    check_tta(tta)
    self.model = model
    self._tta = tta
    self._stored_image_size = int(stored_image_size)
    self.tft_layer = tf_transform_output.transform_features_layer()
    self.class_names = tf.constant(list(class_names))
    raw_spec = tf_transform_output.raw_feature_spec()
    self._raw_spec = raw_spec
    self._serving_spec = {constants.IMAGE_KEY: raw_spec[constants.IMAGE_KEY]}

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name=constants.EXAMPLES_INPUT)])
  def serve(self, examples):
    return self._predict(tf.io.parse_example(examples, self._serving_spec))

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name=constants.IMAGE_BYTES_INPUT)])
  def serve_image_bytes(self, image_bytes):
    pngs = encoded_to_stored_png(image_bytes, self._stored_image_size)
    # Shaped as tf.io.parse_example gives the feature ([B, 1] with SchemaGen's inferred shape).
    shape = self._serving_spec[constants.IMAGE_KEY].shape
    return self._predict({constants.IMAGE_KEY: tf.reshape(pngs, [-1, *shape])})

  def _predict(self, features):
    """Raw features (the `image` PNG bytes) -> Transform -> model -> the serving outputs."""
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
  """Saves the SavedModel with its signatures and writes provenance files beside its assets.

  The stored image size (what the image-bytes signature resizes to) is the provenance's
  classes.json record, the one `pipeline.predict` reads too.
  """
  stored_size = provenance[constants.CLASSES_FILE][constants.STORED_IMAGE_SIZE]
  module = ServingModule(model, tf_transform_output, class_names, stored_size, tta)
  tf.saved_model.save(module, export_dir, signatures={
      constants.SERVING_SIGNATURE: module.serve.get_concrete_function(),
      constants.TRANSFORM_SIGNATURE: module.transform.get_concrete_function(),
      constants.IMAGE_BYTES_SIGNATURE: module.serve_image_bytes.get_concrete_function(),
  })
  write_provenance(os.path.join(export_dir, constants.PROVENANCE_DIR), provenance)


def write_provenance(directory: str, files: Dict[str, Any]) -> None:
  """Writes each {file name: JSON-serializable value} as an indented JSON file."""
  tf.io.gfile.makedirs(directory)
  for name, value in files.items():
    with tf.io.gfile.GFile(os.path.join(directory, name), 'w') as f:
      json.dump(value, f, indent=2, sort_keys=True)
