"""ExampleGen's readers without running a pipeline: the content fingerprint (the cache key) and
the pixels of an image folder's files, against what hashlib and Pillow compute on their own."""
import hashlib
import os

import numpy as np
import pytest
from PIL import Image

from base import constants
from components.example_gen import component
from datasources import sources
from tests import fixtures


def _sha256_of_folder(root: str) -> str:
  """The fingerprint's definition written out: each image's path relative to the folder, then
  its bytes, in the reader's order (train/ then test/, classes and files sorted)."""
  digest = hashlib.sha256()
  for split in (constants.TRAIN_SPLIT, constants.TEST_SPLIT):
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
      continue
    for class_name in sorted(os.listdir(split_dir)):
      for name in sorted(os.listdir(os.path.join(split_dir, class_name))):
        if name.startswith('.') or not name.endswith('.png'):
          continue
        with open(os.path.join(split_dir, class_name, name), 'rb') as f:
          content = f.read()
        digest.update(f'{split}/{class_name}/{name}'.encode() + b'\0' + content + b'\0')
  return digest.hexdigest()[:16]


def test_image_folder_fingerprint_is_the_sha256_of_paths_and_bytes(tmp_path):
  """The same digest however the folder is named (a trailing slash, a `.` in it): a cached run
  stays cached when only the spelling of --data changes."""
  fixtures.write_image_folder(str(tmp_path), ['cat', 'dog'], 3, test_per_class=2)
  (tmp_path / 'train' / 'cat' / 'notes.txt').write_text('not an image')
  expected = _sha256_of_folder(str(tmp_path))
  for spelling in (str(tmp_path), str(tmp_path) + '/', os.path.join(str(tmp_path), '.')):
    assert component.content_fingerprint(constants.SOURCE_IMAGE_FOLDER, spelling) == expected


def test_archive_fingerprint_is_the_sha256_of_its_name_and_bytes(tmp_path):
  path = tmp_path / 'cifar-100-python.tar.gz'
  path.write_bytes(os.urandom(3 << 20))  # over one 1 MiB read
  expected = hashlib.sha256(b'cifar-100-python.tar.gz\0' + path.read_bytes() + b'\0')
  assert (component.content_fingerprint(constants.SOURCE_CIFAR_ARCHIVE, str(path)) ==
          expected.hexdigest()[:16])


@pytest.mark.parametrize('fmt', ['jpg', 'png'])
def test_read_image_gives_pillows_pixels(tmp_path, fmt):
  fixtures.write_image_folder(str(tmp_path), ['cat'], 4, fmt=fmt)
  folder = tmp_path / 'train' / 'cat'
  for name in sorted(os.listdir(folder)):
    pixels, conversion = sources.read_image(str(folder / name))
    with Image.open(folder / name) as img:
      np.testing.assert_array_equal(pixels, np.asarray(img.convert('RGB')))
    assert pixels.dtype == np.uint8 and pixels.shape == (32, 32, 3) and conversion is None


def test_read_file_reads_every_byte(tmp_path):
  for size in (0, 1000, (1 << 20) + 7):
    content = os.urandom(size)
    (tmp_path / 'f').write_bytes(content)
    assert sources.read_file(str(tmp_path / 'f')) == content
