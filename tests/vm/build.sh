#!/bin/bash
# Build (or reuse) everything the VM test tier needs to boot a guest:
#
#   .cache/kernel/<deb-name>/        unpacked, pruned stock Debian kernel package
#        boot/vmlinuz-<kver>         the kernel image qemu boots
#        lib/modules/<kver>/         module tree (depmod'ed); the guest sees it
#                                    as /lib/modules/<kver> via a 9p share so that
#                                    kmod's `modprobe wireguard` works in there
#   .cache/initramfs.cpio.gz         busybox-static + guest/init + guest/stage2
#                                    + the few modules needed to mount 9p
#   .cache/current.env               paths/versions for tests/vm/run to source
#
# Why a Debian kernel at all: the host kernel has no WireGuard and cannot load
# modules, while the stock Debian kernel package ships wireguard.ko.
#
# Idempotent: the kernel is only downloaded when the package that
# linux-image-amd64 points at changes, and the initramfs is only rebuilt when a
# hash of its inputs (kernel version, guest scripts, busybox, this script)
# changes.  Safe to run concurrently (flock).
#
# Debian packages used here: apt, dpkg (apt-get download, dpkg-deb),
# kmod (depmod, modprobe --show-depends), busybox-static, cpio, gzip,
# util-linux (flock), coreutils/findutils/sed/gawk|mawk.
set -euo pipefail

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE="$VM_DIR/.cache"
mkdir -p "$CACHE"

# Serialise concurrent builds (two `tests/vm/run` started at once).
exec 9>"$CACHE/.build.lock"
flock 9

log() { echo "vm-build: $*" >&2; }
die() { echo "vm-build: ERROR: $*" >&2; exit 1; }

for tool in apt-get apt-cache dpkg-deb depmod modprobe cpio gzip sha256sum; do
    command -v "$tool" >/dev/null || die "missing tool '$tool' (see tests/vm/README.md for the Debian packages)"
done
BUSYBOX=/bin/busybox
# The initramfs has no libc, so busybox must be the static build.
if [ ! -x "$BUSYBOX" ] || ldd "$BUSYBOX" >/dev/null 2>&1; then
    die "$BUSYBOX missing or not static: apt-get install busybox-static"
fi

# ---------------------------------------------------------------------------
# 1. Which kernel package?  The one the linux-image-amd64 meta package
#    currently depends on (e.g. linux-image-6.1.0-57-amd64).  apt-cache only
#    reads the local package lists, so this costs no network.
#    NETSETUP_VM_KERNEL_PKG=linux-image-... pins a specific one.
# ---------------------------------------------------------------------------
resolve_pkg() {
    apt-cache depends linux-image-amd64 2>/dev/null \
        | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1
}

PKG=${NETSETUP_VM_KERNEL_PKG:-$(resolve_pkg)}
if [ -z "$PKG" ]; then
    # No usable package lists.  Fall back to the kernel we already have, if any.
    if [ -f "$CACHE/current.env" ]; then
        log "cannot resolve linux-image-amd64 via apt-cache; reusing cached kernel"
        PKG=$(sed -n 's/^KPKG=//p' "$CACHE/current.env")
    else
        log "apt-cache knows no linux-image-amd64; running apt-get update"
        apt-get update -qq >&2 || die "apt-get update failed"
        PKG=$(resolve_pkg)
        [ -n "$PKG" ] || die "could not resolve the kernel package behind linux-image-amd64"
    fi
fi
KVER=${PKG#linux-image-}            # 6.1.0-57-amd64 == `uname -r` in the guest
KDIR="$CACHE/kernel/$PKG"           # unpacked tree
KMODS="$KDIR/lib/modules/$KVER"
VMLINUZ="$KDIR/boot/vmlinuz-$KVER"

# ---------------------------------------------------------------------------
# 2. Download + unpack the kernel package (only if not unpacked yet).
# ---------------------------------------------------------------------------
# Module directories worth keeping.  The package's module tree is ~400 MB,
# mostly hardware drivers (GPU, media, wifi, ...) a 9p-booted test VM never
# needs.  We keep all of net/, fs/, crypto/ etc. and the software network
# drivers, plus whatever those depend on (closure over modules.dep).
# NETSETUP_VM_FULL_MODULES=1 keeps the whole tree.
KEEP_RE='^kernel/(net|fs|crypto|lib|arch|mm|block|virt|security)/|^kernel/drivers/(virtio|char|block|md)/|^kernel/drivers/net/[^/]*\.ko$|^kernel/drivers/net/(wireguard|ipvlan|bonding|team|vxlan|netdevsim|ppp)/'

prune_modules() {
    local moddir=$1 keep
    depmod -b "$KDIR" "$KVER"
    keep=$(mktemp)
    # modules.dep lines: "kernel/x/y.ko: kernel/dep1.ko kernel/dep2.ko" (already
    # the transitive closure), so keeping every word of a kept line suffices.
    awk -v re="$KEEP_RE" '{ sub(/:$/, "", $1); if ($1 ~ re) for (i = 1; i <= NF; i++) { sub(/:$/, "", $i); print $i } }' \
        "$moddir/modules.dep" | sort -u >"$keep"
    (cd "$moddir" && find kernel -name '*.ko*' | sort | comm -23 - "$keep" | xargs -r rm -f)
    find "$moddir/kernel" -type d -empty -delete
    rm -f "$keep"
}

if [ ! -f "$KDIR/.complete" ]; then
    rm -rf "$CACHE/kernel" "$CACHE/deb"     # drop any older kernel
    mkdir -p "$CACHE/deb" "$KDIR"
    log "downloading $PKG"
    # apt-get download writes into the current directory.  Only when it fails
    # (stale lists: the security archive dropped that version) do we update.
    if ! (cd "$CACHE/deb" && apt-get download -q -o APT::Sandbox::User=root "$PKG" >&2); then
        log "apt-get download failed; running apt-get update and retrying"
        apt-get update -qq >&2 || die "apt-get update failed"
        if [ -z "${NETSETUP_VM_KERNEL_PKG:-}" ] && [ "$(resolve_pkg)" != "$PKG" ]; then
            # The meta package moved on; start over with the new kernel.
            exec "$0" "$@"
        fi
        (cd "$CACHE/deb" && apt-get download -q -o APT::Sandbox::User=root "$PKG" >&2) || die "apt-get download $PKG failed"
    fi
    DEB=$(ls "$CACHE"/deb/"$PKG"_*.deb)
    log "unpacking $(basename "$DEB")"
    # Only boot/ and lib/modules/ are needed (skip usr/share/doc etc.).
    dpkg-deb --fsys-tarfile "$DEB" | tar -x -C "$KDIR" --wildcards './boot/vmlinuz-*' './lib/modules/*' \
        || die "unpacking $DEB failed"
    [ -f "$VMLINUZ" ] || die "$DEB has no boot/vmlinuz-$KVER"
    [ -n "$(find "$KMODS" -name 'wireguard.ko*' -print -quit)" ] || die "$DEB ships no wireguard.ko"
    if [ -z "${NETSETUP_VM_FULL_MODULES:-}" ]; then
        prune_modules "$KMODS"
    fi
    # The .deb does not ship modules.dep & co (its postinst runs depmod).
    depmod -b "$KDIR" "$KVER"
    rm -rf "$CACHE/deb"                     # 70 MB we no longer need
    echo "$PKG" >"$KDIR/.complete"
fi

# ---------------------------------------------------------------------------
# 3. initramfs: busybox, /init (stage 1), /stage2, and the modules to mount
#    the 9p shares (+ overlayfs, virtio-rng), in the order modprobe would load
#    them, so /init can simply insmod them one by one.
# ---------------------------------------------------------------------------
BOOT_MODULES="virtio_pci 9pnet_virtio 9p overlay virtio_rng"

mod_order() {
    local m
    for m in $BOOT_MODULES; do
        modprobe -d "$KDIR" -S "$KVER" --show-depends "$m" \
            || die "module $m not found for $KVER"
    done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }'
}
MODPATHS=$(mod_order)

STAMP=$( {
    echo "$PKG"
    echo "$BOOT_MODULES"
    sha256sum "$VM_DIR/guest/init" "$VM_DIR/guest/stage2" "$BUSYBOX" "$VM_DIR/build.sh"
} | sha256sum | cut -d' ' -f1)
INITRD="$CACHE/initramfs.cpio.gz"

if [ ! -f "$INITRD" ] || [ "$(cat "$CACHE/initramfs.stamp" 2>/dev/null)" != "$STAMP" ]; then
    log "building initramfs for $KVER"
    STAGE="$CACHE/initramfs.d"
    rm -rf "$STAGE"
    mkdir -p "$STAGE"/{bin,dev,proc,sys,mnt,newroot,lib/modules}
    cp "$BUSYBOX" "$STAGE/bin/busybox"
    ln -s busybox "$STAGE/bin/sh"           # for /init's #! line; the rest via --install
    install -m 0755 "$VM_DIR/guest/init" "$STAGE/init"
    install -m 0755 "$VM_DIR/guest/stage2" "$STAGE/stage2"
    : >"$STAGE/modules.load"
    for p in $MODPATHS; do
        cp "$p" "$STAGE/lib/modules/"
        basename "$p" >>"$STAGE/modules.load"
    done
    # Reproducible archive: sorted names, fixed mtimes, no gzip timestamp.
    (cd "$STAGE" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) \
        | gzip -n -9 >"$INITRD.tmp"
    mv "$INITRD.tmp" "$INITRD"
    echo "$STAMP" >"$CACHE/initramfs.stamp"
    rm -rf "$STAGE"
fi

# ---------------------------------------------------------------------------
# 4. Warm the guest's Python bytecode cache.  The guest runs with
#    PYTHONPYCACHEPREFIX=<this dir> (a writable 9p share), which makes Python
#    ignore the __pycache__ dirs next to the sources, so a cold cache means the
#    guest compiles every module it imports under slow TCG (~40 s for pyroute2
#    + pytest on the first run).  Compiling on the host takes ~8 s once; the
#    paths are identical in the guest, so the .pyc files are valid there.
#    Redone only when one of the package directories changes (pip install).
#    Modules outside these dirs (the project, pytest's assertion-rewritten
#    files) are still compiled lazily by the guest and then kept.
# ---------------------------------------------------------------------------
VENV_PY="$VM_DIR/../../.venv/bin/python"
if [ -x "$VENV_PY" ]; then
    PYDIRS=$("$VENV_PY" -c 'import sys, os; print("\n".join(p for p in sys.path[1:] if os.path.isdir(p)))')
    # shellcheck disable=SC2086
    PYSTAMP=$( { "$VENV_PY" -VV; stat -c '%n %Y' $PYDIRS; } | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$CACHE/pycache.stamp" 2>/dev/null)" != "$PYSTAMP" ]; then
        log "precompiling Python bytecode for the guest"
        mkdir -p "$CACHE/pycache"
        # Errors (e.g. py2-only files shipped by some package) are harmless:
        # such files cannot be imported anyway.
        # shellcheck disable=SC2086
        PYTHONPYCACHEPREFIX="$CACHE/pycache" PYTHONDONTWRITEBYTECODE='' \
            "$VENV_PY" -m compileall -q -j0 $PYDIRS >/dev/null 2>&1 || true
        echo "$PYSTAMP" >"$CACHE/pycache.stamp"
    fi
fi

# ---------------------------------------------------------------------------
# 5. Hand the results to tests/vm/run.
# ---------------------------------------------------------------------------
cat >"$CACHE/current.env.tmp" <<EOF
KPKG=$PKG
KVER=$KVER
VMLINUZ=$VMLINUZ
INITRD=$INITRD
KMODS=$KMODS
EOF
mv "$CACHE/current.env.tmp" "$CACHE/current.env"
