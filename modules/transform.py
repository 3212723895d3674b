"""Transform module file: decode the PNG to pixels; `normalize`, the model family's input range.

TFX's Transform component calls `preprocessing_fn`; the same graph is exported inside the model
(modules/export.py), so serving takes the raw PNG bytes and there is no training/serving skew.

`preprocessing_fn` decodes to pixels, integers in [0, 255] (int64, 3 KB as uint8 in the Trainer's
in-memory cache). Transform materialises nothing: it writes only this graph (TFT's in-place mode,
no Beam pass), and the Tuner and the Trainer apply it to ExampleGen's examples in tf.data
(modules/inputs.py). The normalization the model family expects (`normalize`, below) is the
model's first layer (modules/models.py), so the Trainer's input, the exported model and every
serving signature apply the very same function to the very same pixels, and one Transform output
serves every model of a study whatever its preprocessing mode (docs/benchmarks.md: data
preparation).

Resizing to --image-size is NOT done here either: the model resizes on the fly in its first
layers. At 224 px, 40,000 materialised training images would be ~6 GB even as uint8; resized on
the fly they cost nothing on disk, and the exported model resizes the same way at serving time.
"""
from typing import Any, Dict

import tensorflow as tf

from base import constants


# keras.applications' preprocess_input modes, for images in [0, 255].
_IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


def normalize(images: tf.Tensor, mode: str) -> tf.Tensor:
  """float32 RGB images in [0, 255] -> the input range of a model family.

  'unit': [0, 1]; 'tf': [-1, 1]; 'caffe': BGR minus the ImageNet mean; 'torch': [0, 1] minus the
  ImageNet mean over its std; 'raw': unchanged (EfficientNet rescales inside the model).
  """
  if mode == 'unit':
    return images / 255.0
  if mode == 'tf':
    return images / 127.5 - 1.0
  if mode == 'caffe':
    return images[..., ::-1] - tf.constant(_IMAGENET_MEAN_BGR)
  if mode == 'torch':
    return (images / 255.0 - tf.constant(_TORCH_MEAN)) / tf.constant(_TORCH_STD)
  if mode == 'raw':
    return images
  raise ValueError(f'unknown preprocessing mode {mode!r}')


def normalize_pixels(pixels: tf.Tensor, mode: str) -> tf.Tensor:
  """Pixels in [0, 255] of any numeric dtype (Transform's int64, the cache's uint8) -> `normalize`
  in float32: what the model's first layer computes."""
  return normalize(tf.cast(pixels, tf.float32), mode)


def decode_images(png_bytes: tf.Tensor, size: int) -> tf.Tensor:
  """[B] or [B, 1] PNG strings -> [B, size, size, 3] uint8 pixels."""
  png_bytes = tf.reshape(png_bytes, [-1])
  # decode_png takes one image; map_fn runs the decodes of a batch in parallel iterations.
  return tf.map_fn(
      lambda png: tf.ensure_shape(tf.io.decode_png(png, channels=3), [size, size, 3]),
      png_bytes, fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8),
      parallel_iterations=32)


# Called by the Transform component (and by the exported model's serving signatures).
def preprocessing_fn(inputs: Dict[str, tf.Tensor], custom_config: Dict[str, Any]):
  """Raw features -> {image_xf: [B, S, S, 3] int64 pixels in [0, 255], label_xf: [B] int64}.

  int64, the integer type of a tf.Example and of TFT's schemas. No analyzer: with none, and with
  materialize=False and disable_statistics=True, TFX runs Transform in place, without Beam.
  """
  images = decode_images(inputs[constants.IMAGE_KEY], int(custom_config[constants.STORED_IMAGE_SIZE]))
  return {
      constants.IMAGE_XF_KEY: tf.cast(images, tf.int64),
      constants.LABEL_XF_KEY: tf.reshape(inputs[constants.LABEL_KEY], [-1]),
  }
