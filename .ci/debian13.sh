#!/usr/bin/env bash
# Run a command inside a Debian 13 (trixie) root, with this checkout mounted at its own path.
#
# Why: TFX 1.21's ml-metadata and tensorflow-data-validation wheels need glibc >= 2.39, and CI runs on
# Debian 12 (glibc 2.36). A debootstrap root from Debian's own archive gives CI the glibc 2.41 and
# Python 3.13 of a fresh Debian 13 machine without a VM, a container runtime or any registry but
# Debian's and PyPI.
#
#   .ci/debian13.sh CMD [ARGS...]     e.g. .ci/debian13.sh make install STACK=tfx121
#   .ci/debian13.sh --check           exit 0 when the root is intact (nothing is created or mounted)
#   .ci/debian13.sh --remove          delete the root (refuses while anything is mounted inside it)
#
# The root lives outside the checkout (DEBIAN13_ROOT, default /var/cache/cifar100-tfx/debian13) and is
# reused between runs while it is intact: its stamp matches this script's package list and its
# python3 (with venv and ensurepip) and g++ run. Otherwise it is rebuilt in a side folder and moved
# into place only when complete, so an interrupted build never looks intact.
#
# Mounts (/proc, /sys, /dev with /dev/pts and /dev/shm, the checkout, ../shared when present) are made
# in a private mount namespace (unshare): the kernel drops them when the command ends, whatever way it
# ends (error, Ctrl-C, kill -9), and they are invisible to the rest of the machine. A trap also
# unmounts them explicitly on every exit path of the script.
#
# DEBIAN13_BINDS: more host folders (space-separated) bound read-write at their own paths.
#
# The command runs as root with HOME=/root, a clean environment (a short list of variables passes
# through: CI, TF_CPP_MIN_LOG_LEVEL, PYTHONHASHSEED, PIP_DEFAULT_TIMEOUT, STACK, plus any named in
# DEBIAN13_PASS_ENV), in the checkout's directory. Exit status: the command's, or 2 for a setup error.
set -euo pipefail

readonly SUITE=trixie
readonly PACKAGES=python3,python3-venv,python3-pip,python3-dev,g++,make,ca-certificates,git
# Bump when PACKAGES or the root's setup changes: a root with another stamp is rebuilt.
readonly STAMP_TEXT="cifar100-tfx debian13 root v1 suite=${SUITE} packages=${PACKAGES}"

ROOT=${DEBIAN13_ROOT:-/var/cache/cifar100-tfx/debian13}
MIRROR=${DEBIAN13_MIRROR:-http://deb.debian.org/debian}
CHECKOUT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
SHARED=$(dirname "$CHECKOUT")/shared
STAMP="$ROOT/etc/cifar100-tfx-root"
PASS_ENV="CI TF_CPP_MIN_LOG_LEVEL PYTHONHASHSEED PIP_DEFAULT_TIMEOUT STACK ${DEBIAN13_PASS_ENV:-}"

die() { echo "error: $*" >&2; exit 2; }
log() { echo "[debian13] $*" >&2; }

# Paths mounted at or under $1, deepest first (so they can be unmounted in that order).
mounts_under() {
  awk -v root="$1" '$5 == root || index($5, root "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

root_is_intact() {
  [[ -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$STAMP_TEXT" ]] || return 1
  chroot "$ROOT" /usr/bin/python3 -c 'import venv, ensurepip, sys; assert sys.version_info[:2] >= (3, 11)' \
    >/dev/null 2>&1 || return 1
  chroot "$ROOT" /usr/bin/g++ --version >/dev/null 2>&1
}

remove_dir() {  # rm -rf that refuses to cross into anything still mounted inside (e.g. the checkout).
  local dir=$1
  [[ -e "$dir" ]] || return 0
  [[ -z "$(mounts_under "$dir")" ]] || die "something is still mounted under $dir: $(mounts_under "$dir" | tr '\n' ' ')"
  rm -rf --one-file-system "$dir"
}

build_root() {
  if ! command -v debootstrap >/dev/null && command -v apt-get >/dev/null; then
    log "installing debootstrap (Debian's package archive)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; } >/dev/null 2>&1 || true
  fi
  command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install -y debootstrap)"
  local partial="$ROOT.partial" start=$SECONDS
  remove_dir "$partial"
  mkdir -p "$(dirname "$ROOT")"
  log "building a Debian 13 root at $ROOT (debootstrap --variant=minbase $SUITE, from $MIRROR)"
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$partial" "$MIRROR" >"$partial.log" 2>&1 \
    || { tail -n 20 "$partial.log" >&2; die "debootstrap failed (log: $partial.log)"; }
  chroot "$partial" apt-get clean
  echo "$STAMP_TEXT" >"$partial/etc/cifar100-tfx-root"
  remove_dir "$ROOT"
  mv "$partial" "$ROOT"
  rm -f "$partial.log"
  log "root built in $((SECONDS - start)) s, $(du -sh --one-file-system "$ROOT" | cut -f1)"
}

# The machine's own extra CAs (e.g. a TLS-inspecting egress proxy's) must be trusted inside too, or
# pip cannot reach PyPI; they may change between machines, so they are copied on every run.
sync_local_cas() {
  local dest="$ROOT/usr/local/share/ca-certificates"
  rm -rf "$dest" && mkdir -p "$dest"
  if compgen -G '/usr/local/share/ca-certificates/*' >/dev/null; then cp -rL /usr/local/share/ca-certificates/. "$dest/"; fi
  chroot "$ROOT" update-ca-certificates --fresh >/dev/null 2>&1 || die "update-ca-certificates failed inside $ROOT"
}

unmount_all() {
  local m
  for m in $(mounts_under "$ROOT"); do umount -l "$m" 2>/dev/null || true; done
}

# Bind $1 onto the same path inside the root ($2: extra mount options, e.g. ro).
bind_same_path() {
  mkdir -p "$ROOT$1"
  mount --bind "$1" "$ROOT$1"
  [[ -z "${2:-}" ]] || mount -o "remount,bind,$2" "$ROOT$1"
}

run_inside() {
  trap unmount_all EXIT
  mount --make-rprivate /  # nothing mounted here propagates back to the machine's namespace
  mount -t proc proc "$ROOT/proc"
  mount -t sysfs sysfs "$ROOT/sys"
  mount --rbind /dev "$ROOT/dev"  # with /dev/shm (multiprocessing, Beam) and /dev/pts
  bind_same_path "$CHECKOUT"
  [[ ! -d "$SHARED" ]] || bind_same_path "$SHARED" ro
  local extra
  for extra in ${DEBIAN13_BINDS:-}; do bind_same_path "$extra"; done
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
  local env_args=(HOME=/root LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
  local name
  for name in $PASS_ENV; do [[ -z "${!name+x}" ]] || env_args+=("$name=${!name}"); done
  set +e
  chroot "$ROOT" /usr/bin/env -i "${env_args[@]}" /bin/bash -c 'cd "$1" && shift && exec "$@"' bash "$CHECKOUT" "$@"
  local status=$?
  set -e
  return $status
}

main() {
  [[ $EUID -eq 0 ]] || die "needs root (debootstrap, chroot and mount)"
  case "${1:-}" in
    '') die "usage: $0 CMD [ARGS...] | --check | --remove" ;;
    --check) root_is_intact; return ;;
    --remove) remove_dir "$ROOT.partial"; remove_dir "$ROOT"; return ;;
    --inside) shift; run_inside "$@"; return ;;  # internal: main re-runs itself here under unshare
  esac
  mkdir -p "$(dirname "$ROOT")"
  # One builder at a time; concurrent runs then share the finished root.
  exec 9>"$(dirname "$ROOT")/.debian13.lock"
  flock 9
  if root_is_intact; then log "reusing the intact root at $ROOT"; else build_root; fi
  sync_local_cas
  flock -u 9
  # A private mount namespace: its mounts disappear with its last process, even on kill -9.
  exec unshare --mount --propagation private -- "$CHECKOUT/.ci/debian13.sh" --inside "$@"
}

main "$@"
