"""Transform module file: decode the PNG, normalise it the way the chosen model expects.

TFX's Transform component calls `preprocessing_fn`; the same graph is exported inside the model
(modules/export.py), so serving takes the raw PNG bytes and there is no training/serving skew.

Resizing to --image-size is NOT done here: Transform materialises images at their stored size
(32x32 for CIFAR-100, 12 KiB of float32 each), and the model resizes on the fly in its first
layer. At 224 px, 40,000 materialised training images would be ~24 GB; resized on the fly they
cost nothing on disk, and the exported model resizes the same way at serving time.
"""
from typing import Any, Dict

import tensorflow as tf

from base import constants

# Keys of the Transform component's custom_config.
PREPROCESSING = 'preprocessing'  # one of PREPROCESSING_MODES (modules.models.ModelSpec)

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


def decode_images(png_bytes: tf.Tensor, size: int) -> tf.Tensor:
  """[B] or [B, 1] PNG strings -> [B, size, size, 3] float32 in [0, 255]."""
  png_bytes = tf.reshape(png_bytes, [-1])
  images = tf.map_fn(
      lambda png: tf.ensure_shape(tf.io.decode_png(png, channels=3), [size, size, 3]),
      png_bytes, fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8))
  return tf.cast(images, tf.float32)


# Called by the Transform component (and by the exported model's serving signatures).
def preprocessing_fn(inputs: Dict[str, tf.Tensor], custom_config: Dict[str, Any]):
  """Raw features -> {image_xf: [B, S, S, 3] float32 normalised, label_xf: [B] int64}."""
  images = decode_images(inputs[constants.IMAGE_KEY], int(custom_config[constants.STORED_IMAGE_SIZE]))
  return {
      constants.IMAGE_XF_KEY: normalize(images, custom_config[PREPROCESSING]),
      constants.LABEL_XF_KEY: tf.reshape(inputs[constants.LABEL_KEY], [-1]),
  }
