"""How long the preflight's image-folder check takes (`sources.scan_image_folder`).

Writes an image folder of 32x32 PNGs (generated pixels, like the CIFAR-100 ones: ~2.3 KB each)
once into --workdir, then times the scan --repeat times per number of decoding threads, in this
process (the files are in the page cache after the first pass: the first time is also printed),
with the CPU seconds it used (worker processes included): on a busy machine the wall time
depends on the others' jobs, the CPU time much less.

    python benchmarks/preflight.py [--images 10000] [--workers 1 2] [--repeat 3]
    python benchmarks/preflight.py --code-root /tmp/old   # another checkout's sources.py, e.g.
                                                          # git archive HEAD | tar -x -C /tmp/old

Target (docs/reliability.md): a few seconds for 60,000 images on 2 cores.
"""
import argparse
import inspect
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_folder(root: str, images: int, classes: int = 100) -> None:
  """root/train/class_KK/NNNN.png; does nothing when the folder is already complete."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  marker = os.path.join(root, f'.complete-{images}')
  if os.path.exists(marker):
    return
  rng = np.random.default_rng(0)
  per_class = images // classes
  for c in range(classes):
    folder = os.path.join(root, 'train', f'class_{c:02d}')
    os.makedirs(folder, exist_ok=True)
    base = rng.integers(0, 256, (1, 1, 3))
    for n in range(per_class):
      noise = rng.normal(0, 25, (32, 32, 3))
      pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
      Image.fromarray(pixels).save(os.path.join(folder, f'{n:04d}.png'))
  open(marker, 'w').close()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', default='/tmp/preflight_benchmark')
  parser.add_argument('--images', type=int, default=10000)
  parser.add_argument('--workers', type=int, nargs='+', default=[1, 2])
  parser.add_argument('--repeat', type=int, default=3)
  parser.add_argument('--code-root', default=ROOT, help='where datasources/ is imported from')
  args = parser.parse_args()
  sys.path.insert(0, args.code_root)
  from datasources import sources  # pylint: disable=g-import-not-at-top
  root = os.path.join(args.workdir, f'folder_{args.images}')
  write_folder(root, args.images)
  threaded = 'workers' in inspect.signature(sources.scan_image_folder).parameters
  for workers in args.workers if threaded else [None]:
    kwargs = {'workers': workers} if threaded else {}
    times, cpus = [], []
    for _ in range(args.repeat):
      cpu, started = sum(os.times()[:4]), time.perf_counter()
      scan = sources.scan_image_folder(root, **kwargs)
      times.append(time.perf_counter() - started)
      cpus.append(sum(os.times()[:4]) - cpu)  # user + system, worker processes included
    count = sum(len(f) for f in scan.train_files.values())
    print(f'{args.code_root}: {count:,} images, workers={workers}: first {times[0]:.2f} s, '
          f'best {min(times):.2f} s ({count / min(times):,.0f} images/s), CPU {min(cpus):.2f} s; '
          f'load average {os.getloadavg()[0]:.1f}')


if __name__ == '__main__':
  main()
