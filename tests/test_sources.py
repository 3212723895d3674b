"""Reading sources: the CIFAR-100 archive and folder, image folders, and the split rules."""
import io
import os
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from datasources import sources
from base import constants
from base.errors import UserError
from tests import fixtures

ARCHIVE, FOLDER = constants.SOURCE_CIFAR_ARCHIVE, constants.SOURCE_CIFAR_FOLDER


def test_archive_pixels_labels_and_names(cifar_archive):
  path, expected = cifar_archive
  train = sources.read_cifar_split(ARCHIVE, path, 'train')
  assert train.images.shape == (800, 32, 32, 3) and train.images.dtype == np.uint8
  np.testing.assert_array_equal(train.images, expected['train'])
  np.testing.assert_array_equal(train.fine_labels, expected['train_fine'])
  coarse_names = sources.read_cifar_meta(ARCHIVE, path).coarse_names
  assert [coarse_names[c] for c in train.coarse_labels[:5]] == [
      fixtures.COARSE_NAMES[fixtures.COARSE_OF[fixtures.FINE_NAMES[f]]]
      for f in train.fine_labels[:5]]
  meta = sources.read_cifar_meta(ARCHIVE, path)
  assert meta.fine_names == fixtures.FINE_NAMES and len(meta.coarse_names) == 20


def test_extracted_folder_reads_the_same(cifar_archive, tmp_path):
  path, expected = cifar_archive
  folder = fixtures.extract_archive(path, str(tmp_path))
  test = sources.read_cifar_split(FOLDER, folder, 'test')
  np.testing.assert_array_equal(test.images, expected['test'])


def test_channel_major_layout(tmp_path):
  """Row = 1024 red, 1024 green, 1024 blue values: pixel (0, 1) is data[1], data[1025], data[2049]."""
  path = str(tmp_path / 'c.tar.gz')
  fixtures.write_cifar100_archive(path, 1, 1)
  with tarfile.open(path) as tar:
    raw = pickle.loads(tar.extractfile('cifar-100-python/train').read(), encoding='bytes')
  image = sources.read_cifar_split(ARCHIVE, path, 'train').images[0]
  assert tuple(image[0, 1]) == tuple(raw[b'data'][0][[1, 1025, 2049]])


def test_md5_refused_unless_trusted(cifar_archive):
  path, _ = cifar_archive
  with pytest.raises(UserError, match='is not the official CIFAR-100 archive'):
    sources.check_archive_md5(path, trust_data=False)
  sources.check_archive_md5(path, trust_data=True)


def test_truncated_archive(tmp_path):
  path = str(tmp_path / 'cifar-100-python.tar.gz')
  fixtures.write_cifar100_archive(path, 2, 1, corrupt='truncate')
  with pytest.raises(UserError, match='truncated or corrupt archive'):
    sources.read_cifar_split(ARCHIVE, path, 'test')


def test_not_an_archive(tmp_path):
  path = tmp_path / 'cifar-100-python.tar.gz'
  path.write_bytes(b'not a gzip file at all')
  with pytest.raises(UserError, match='truncated or corrupt archive'):
    sources.read_cifar_meta(ARCHIVE, str(path))


def test_pickle_that_runs_code_is_refused(tmp_path):
  folder = tmp_path / 'cifar-100-python'
  folder.mkdir()

  class Evil:
    def __reduce__(self):
      return (os.system, ('echo pwned',))

  (folder / 'meta').write_bytes(pickle.dumps({b'fine_label_names': Evil()}, protocol=2))
  with pytest.raises(UserError, match='not a readable CIFAR-100 pickle.*not allowed'):
    sources.read_cifar_meta(FOLDER, str(folder))


def test_missing_member(tmp_path):
  folder = tmp_path / 'cifar-100-python'
  folder.mkdir()
  with pytest.raises(UserError, match="no file 'meta'"):
    sources.read_cifar_meta(FOLDER, str(folder))


def test_image_folder_scan_and_load(tmp_path):
  written = fixtures.write_image_folder(str(tmp_path), ['cat', 'dog'], 4, 2, fmt='png')
  (tmp_path / 'train' / 'cat' / 'notes.txt').write_text('not an image')
  scan = sources.scan_image_folder(str(tmp_path))
  assert scan.class_names == ('cat', 'dog') and scan.skipped == 1
  assert len(scan.train_files['dog']) == 4 and len(scan.test_files['cat']) == 2
  assert scan.image_size == (32, 32)
  loaded = sources.load_image(scan.train_files['dog'][1], (32, 32))
  np.testing.assert_array_equal(loaded, written['train']['dog'][1])


def test_image_folder_errors(tmp_path):
  fixtures.write_image_folder(str(tmp_path), ['cat', 'dog'], 3)
  os.makedirs(tmp_path / 'train' / 'empty')
  with pytest.raises(UserError, match="class 'empty' has no images"):
    sources.scan_image_folder(str(tmp_path))
  os.rmdir(tmp_path / 'train' / 'empty')
  Image.new('RGB', (40, 40)).save(tmp_path / 'train' / 'dog' / 'big.png')
  with pytest.raises(UserError, match='images of mixed sizes.*big.png is 40x40'):
    sources.scan_image_folder(str(tmp_path))
  os.remove(tmp_path / 'train' / 'dog' / 'big.png')
  (tmp_path / 'train' / 'dog' / 'broken.jpg').write_bytes(b'\xff\xd8 not really a jpeg')
  with pytest.raises(UserError, match='broken.jpg: not a readable image'):
    sources.scan_image_folder(str(tmp_path))
  with pytest.raises(UserError, match='no train/ folder'):
    sources.scan_image_folder(str(tmp_path / 'train'))


def test_stratified_holdout_is_per_class_and_deterministic():
  labels = np.repeat([0, 1, 2], [100, 40, 7])
  mask = sources.stratified_holdout(labels, 0.15, seed=5)
  assert [int(mask[labels == c].sum()) for c in range(3)] == [15, 6, 1]
  np.testing.assert_array_equal(mask, sources.stratified_holdout(labels, 0.15, seed=5))
  assert not np.array_equal(mask, sources.stratified_holdout(labels, 0.15, seed=6))


def test_holdout_count_edges():
  assert sources.holdout_count(1, 0.5) == 0  # a lone image stays in training
  assert sources.holdout_count(2, 0.01) == 1
  assert sources.holdout_count(10, 0.99) == 9


def test_tail_holdout_takes_the_last_files():
  files = [f'{i:02d}.png' for i in range(10)]
  keep, held = sources.tail_holdout(files, 0.2)
  assert held == ['08.png', '09.png'] and keep == files[:8]
  with pytest.raises(UserError, match='cannot hold out'):
    sources.tail_holdout(['only.png'], 0.2)
