#!/usr/bin/env bash
# Makes a small VM that boots Debian 12's own kernel, for the tests that
# need what the test machine's kernel may lack (WireGuard, ipvlan, VLANs):
# the kernel, and an initramfs of busybox, the kernel modules named (with
# what they depend on, loaded in order at boot) and one program with its
# libraries. At boot /init gives eth0 the address of the kernel command
# line's `rn.ip=ADDR/LEN`, runs the program with the command line's words,
# prints `rn: program exited N` and powers the VM off.
#
#   scripts/vm-image.sh --fetch               the kernel only
#   scripts/vm-image.sh OUT PROGRAM MODULE...
#
# Writes OUT/vmlinuz and OUT/initramfs.gz. The kernel package is fetched
# (apt-get download: nothing installed) once and kept under target/vm;
# scripts/test.sh fetches it before the tests, which run in network
# namespaces of their own, without the network.
set -euo pipefail
fetch_only=false
if [ "${1:-}" = --fetch ]; then
    fetch_only=true
else
    out=$(realpath -m "$1")
    program=$(realpath "$2")
    shift 2
fi
cd "$(dirname "$0")/.."
root=$PWD/target/vm
mkdir -p "$root"
exec 9>"$root/.lock"
flock 9

if [ ! -f "$root/kernel/version" ]; then
    package() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
    pkg=$(package)
    if [ -z "$pkg" ]; then
        apt-get update -qq
        pkg=$(package)
    fi
    [ -n "$pkg" ] || { echo "no Debian kernel package (linux-image-amd64) in apt's lists" >&2; exit 1; }
    rm -rf "$root/kernel" "$root/kernel.tmp"
    mkdir -p "$root/kernel.tmp/deb"
    (cd "$root/kernel.tmp/deb" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >/dev/null) || {
        echo "could not fetch $pkg (without the network, as in a test's namespace? run" \
            "scripts/vm-image.sh --fetch first: scripts/test.sh does)" >&2
        exit 1
    }
    dpkg-deb -x "$root"/kernel.tmp/deb/*.deb "$root/kernel.tmp/tree"
    version=$(ls "$root/kernel.tmp/tree/lib/modules")
    busybox depmod -b "$root/kernel.tmp/tree" "$version"
    echo "$version" >"$root/kernel.tmp/version"
    rm -rf "$root/kernel.tmp/deb"
    mv "$root/kernel.tmp" "$root/kernel"
fi
version=$(cat "$root/kernel/version")
if $fetch_only; then
    echo "Debian kernel $version under $root/kernel"
    exit 0
fi
tree=$root/kernel/tree
modules=$tree/lib/modules/$version

mkdir -p "$out"
stage=$(mktemp -d "$root/stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,dev,proc,sys,tmp,run} "$stage/lib/modules/$version"
cp "$(command -v busybox)" "$stage/bin/busybox"
for applet in $(busybox --list); do
    [ -e "$stage/bin/$applet" ] || ln -s busybox "$stage/bin/$applet"
done

# The program, without its debug information, and its libraries.
strip -o "$stage/program" "$program"
for lib in $(ldd "$program" | grep -oE '/[^ ]+'); do
    mkdir -p "$stage$(dirname "$lib")"
    cp -L "$lib" "$stage$lib"
done

# The modules and what they need, by modules.dep (which lists a module's
# dependencies whole).
cp "$modules"/modules.{dep,alias,builtin,order} "$stage/lib/modules/$version/"
: >"$stage/modules"
for module in "$@"; do
    line=$(grep -E "(^|/)${module//[-_]/[-_]}\.ko(\.[a-z]+)?:" "$modules/modules.dep" || true)
    if [ -z "$line" ]; then
        grep -qE "/${module//[-_]/[-_]}\.ko" "$modules/modules.builtin" ||
            { echo "no module $module in Debian's kernel $version" >&2; exit 1; }
        continue
    fi
    for file in ${line/:/}; do
        mkdir -p "$stage/lib/modules/$version/$(dirname "$file")"
        cp "$modules/$file" "$stage/lib/modules/$version/$file"
    done
    echo "$module" >>"$stage/modules"
done

cat >"$stage/init" <<'INIT'
#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for module in $(cat /modules); do
    modprobe "$module" || echo "rn: modprobe $module failed"
done
ip link set lo up
for word in $(cat /proc/cmdline); do
    case $word in
    rn.ip=*) ip addr add "${word#rn.ip=}" dev eth0 ;;
    esac
done
ip link set eth0 up
/program $(cat /proc/cmdline)
echo "rn: program exited $?"
poweroff -f
INIT
chmod +x "$stage/init"
(cd "$stage" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) >"$out/initramfs.gz"
cp "$tree/boot/vmlinuz-$version" "$out/vmlinuz"
echo "$out"
