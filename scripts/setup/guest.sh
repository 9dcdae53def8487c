#!/usr/bin/env bash
# Builds the tiny test guest: Debian's kernel plus a busybox initramfs, cached.
# It boots under QEMU TCG in seconds, prints marker lines on the serial console and
# powers off on an ACPI power-button press. It runs Debian's QEMU guest agent (qemu-ga,
# with the shared libraries it needs, found by ldd on this host) when the domain has
# the org.qemu.guest_agent.0 channel. Nothing is installed on the host.
# Prints the directory holding vmlinuz and initramfs.img (last stdout line).
source "$(dirname "$0")/lib.sh"

# Bump when what this script builds changes (init script, modules, vmlinuz form).
GUEST_REVISION=5
# Modules the guest loads, in this order (their dependencies first, from modules.dep):
# evdev+button turn the ACPI power button into an input event acpid can read; the
# rest let hot-plugged disks, NICs and CD-ROMs show up (all are =m in Debian 6.1);
# ext4 finds the crc32c it needs at mount time through the crypto API, not modules.dep;
# pvpanic_mmio reports a kernel panic to QEMU's ISA pvpanic device (crash tests).
MODULES=(evdev button virtio_pci virtio_blk virtio_net virtio_console virtio_scsi
         ata_piix ahci sd_mod sr_mod crc32c_generic ext4 isofs pvpanic_mmio)

# The version key pins every input: kernel, busybox and qemu-guest-agent package versions
# + revision (qemu-ga's libraries come from the host: same Debian, same ABI).
# One apt-cache call (each costs ~0.7 s), parsed into "package version" lines.
candidates() {
  apt-cache policy linux-image-amd64 busybox-static qemu-guest-agent 2>/dev/null |
    awk '/^[^ ]/ { pkg = $1 } $1 == "Candidate:" && $2 != "(none)" { print pkg, $2 }'
}
versions=$(candidates)
if [[ $(wc -l <<<"$versions") -lt 3 ]]; then  # no package lists yet
  SUDO=""; (( EUID == 0 )) || SUDO="sudo"
  timed "apt-get update" $SUDO apt-get update -q >&2
  versions=$(candidates)
fi
KPKG_VERSION=$(awk '$1 == "linux-image-amd64:" { print $2 }' <<<"$versions")
BB_VERSION=$(awk '$1 == "busybox-static:" { print $2 }' <<<"$versions")
QGA_VERSION=$(awk '$1 == "qemu-guest-agent:" { print $2 }' <<<"$versions")
[[ -n "$KPKG_VERSION" && -n "$BB_VERSION" && -n "$QGA_VERSION" ]] ||
  { echo "no linux-image-amd64/busybox-static/qemu-guest-agent in apt" >&2; exit 1; }
KEY="linux-${KPKG_VERSION}_busybox-${BB_VERSION//:/_}_qga-${QGA_VERSION//:/_}_r${GUEST_REVISION}"
OUT="$CACHE_DIR/guest/$KEY"
if [[ -f "$OUT/vmlinuz" && -f "$OUT/initramfs.img" ]]; then
  echo "$OUT"
  exit 0
fi

step "building test guest $KEY"
start=$SECONDS
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The meta package only depends on the real, ABI-named one (linux-image-6.1.0-N-amd64).
KPKG=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p')
[[ -n "$KPKG" ]] || { echo "cannot resolve linux-image-amd64's kernel package" >&2; exit 1; }
# Sandbox=root: as root, apt would otherwise try (and fail) to write as _apt here.
(cd "$tmp" && timed "apt-get download $KPKG busybox-static qemu-guest-agent" \
  apt-get download -q -o APT::Sandbox::User=root "$KPKG" busybox-static qemu-guest-agent >&2)
timed "dpkg-deb -x $KPKG" dpkg-deb -x "$tmp"/linux-image-*.deb "$tmp/kernel"
dpkg-deb -x "$tmp"/busybox-static_*.deb "$tmp/busybox"
dpkg-deb -x "$tmp"/qemu-guest-agent_*.deb "$tmp/qga"
QGA="$tmp/qga/usr/sbin/qemu-ga"
[[ -x "$QGA" ]] || { echo "qemu-guest-agent has no usr/sbin/qemu-ga" >&2; exit 1; }
KVER=$(basename "$tmp"/kernel/lib/modules/*)
MODDIR="$tmp/kernel/lib/modules/$KVER"
BUSYBOX="$tmp/busybox/bin/busybox"
note "kernel $KVER ($KPKG_VERSION), busybox $BB_VERSION, qemu-ga $QGA_VERSION"

# Debian generates modules.dep at install time (postinst), so the .deb has none:
# busybox's depmod (static, runs on the host) writes it for the extracted tree.
[[ -f "$MODDIR/modules.dep" ]] || timed "depmod" "$BUSYBOX" depmod -b "$tmp/kernel" "$KVER"
declare -A DEPS=() PATH_OF=() SEEN=()
while IFS=: read -r path deps; do
  DEPS[$path]=$deps
  name=${path##*/}; name=${name%%.ko*}; PATH_OF[${name//-/_}]=$path
done < "$MODDIR/modules.dep"
ORDER=()
add_module() {  # depth-first: every dependency goes before the module needing it
  local p=$1 d
  [[ -n "${SEEN[$p]:-}" ]] && return; SEEN[$p]=1
  for d in ${DEPS[$p]}; do add_module "$d"; done
  ORDER+=("$p")
}
for m in "${MODULES[@]}"; do
  if [[ -n "${PATH_OF[$m]:-}" ]]; then add_module "${PATH_OF[$m]}"
  elif grep -q "/${m}\.ko" "$MODDIR/modules.builtin"; then note "$m is built in"
  else echo "module $m is neither built in nor in $KVER" >&2; exit 1; fi
done

# The initramfs tree: busybox, qemu-ga, the modules (flat, uncompressed), acpid's handler, /init.
root="$tmp/root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,lib/modules,etc/acpi/PWRF,var/log,var/run,data}
cp "$BUSYBOX" "$root/bin/busybox"
# qemu-ga is dynamically linked: copy every library ldd resolves for it on this host (the
# same Debian release it is built for) to the same path, and the dynamic loader (its
# PT_INTERP, /lib64/ld-linux-x86-64.so.2). glibc's loader searches /lib/x86_64-linux-gnu
# without an ld.so.cache.
cp "$QGA" "$root/usr/sbin/qemu-ga"
libs=$(ldd "$QGA") || { echo "ldd $QGA failed" >&2; exit 1; }
if grep -q 'not found' <<<"$libs"; then
  echo "qemu-ga needs libraries this host lacks:" >&2; grep 'not found' <<<"$libs" >&2; exit 1
fi
while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$libs")
[[ -f "$root/lib64/ld-linux-x86-64.so.2" ]] || { echo "ldd named no /lib64/ld-linux-x86-64.so.2" >&2; exit 1; }
note "qemu-ga libraries: $(cd "$root" && find lib lib64 -name '*.so*' -type f | grep -v modules | tr '\n' ' ')"
ln -s busybox "$root/bin/sh"
: > "$root/etc/modules"
for p in "${ORDER[@]}"; do
  name=${p##*/}; name=${name%%.ko*}
  case "$p" in  # busybox insmod cannot read compressed modules
    *.ko.xz) xz -dc "$MODDIR/$p" > "$root/lib/modules/$name.ko" ;;
    *.ko.zst) zstd -qdc "$MODDIR/$p" > "$root/lib/modules/$name.ko" ;;
    *) cp "$MODDIR/$p" "$root/lib/modules/$name.ko" ;;
  esac
  echo "$name" >> "$root/etc/modules"
done
note "modules: $(tr '\n' ' ' < "$root/etc/modules")"

# busybox acpid maps the power button (KEY_POWER from `button`, via evdev) to the
# event PWRF and runs /etc/acpi/PWRF/00000080.
cat > "$root/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
printf '\nLIBVIRT-OPERATOR-GUEST-POWEROFF\n' > /dev/console  # own line, past any prompt
fsfreeze --unfreeze /data 2>/dev/null  # a guest agent's freeze left in place must not hang sync
sync
poweroff -f
EOF

# /init. Kernel command-line modes (lvo.*), each announced by LIBVIRT-OPERATOR-GUEST-* lines:
#   lvo.write=<dev>:<text>  write <text> at the start of /dev/<dev>, then 1 MiB of zeros: WROTE <dev>
#   lvo.fill=<dev>          zeros over all of /dev/<dev> in the background: FILLING, FILLED <dev>
#   lvo.panic               the kernel panics right after BOOTED: PANIC
#   lvo.ext4=<dev>          an ext2 file system on /dev/<dev> (made when it has no ext2/3/4 one
#                           yet), mounted on /data by the ext4 driver, before BOOTED:
#                           MOUNTED <dev> (or MOUNT-FAILED <dev>). The one file system the guest
#                           agent's guest-fsfreeze-freeze freezes (virsh domfsfreeze: 1).
#   lvo.counter=<dev>       a counter kept in the first 512-byte sector of /dev/<dev> (a decimal
#                           number and a newline, zero-padded; anything else reads as 0): at boot
#                           COUNTER-BOOT <n>, then every second n+1 is written (fsync) and printed
#                           as COUNTER <n> uptime=<s>. After a disk snapshot's restore the next
#                           boot's COUNTER-BOOT is the value at the snapshot; after a memory
#                           snapshot's restore COUNTER and uptime go back, with no COUNTER-BOOT.
#                           Not on lvo.ext4's disk (COUNTER-SKIPPED <dev>): use another disk.
# Always: DISKS name:bytes … (again whenever they change), BOOTED, BOOTED uptime=<s>, and
# POWEROFF on the ACPI power button. With a virtio-serial port named org.qemu.guest_agent.0
# (libvirt's guest-agent channel), qemu-ga runs on it in the background: AGENT-STARTED (or
# AGENT-EXITED <rc>, NO-AGENT-PORT when a virtio-serial device has no such port).
cat > "$root/init" <<'EOF'
#!/bin/sh
# PID 1 of the test guest. The LIBVIRT-OPERATOR-GUEST-* lines are what tests wait for
# (the modes and markers are listed in scripts/setup/guest.sh).
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
dmesg -n 1  # from now on keep kernel messages from splitting the marker lines
while read -r m; do insmod "/lib/modules/$m.ko" || echo "insmod $m failed"; done < /etc/modules
# acpid opens the input devices when it starts: wait (briefly) for the power button.
i=0; while [ ! -e /dev/input/event0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
acpid
# The QEMU guest agent on the virtio-serial port of libvirt's org.qemu.guest_agent.0 channel.
# Ports are announced by the host a little after virtio_console binds, and without udev
# nobody makes the /dev/virtio-ports/<name> link. Started in the background after BOOTED:
# loading it (glib & co.) on the one TCG vCPU would otherwise hold the boot back ~0.5 s.
agent() {
  ls /sys/bus/virtio/drivers/virtio_console 2>/dev/null | grep -q '^virtio' || return 0  # no channel
  w=0
  while [ $w -lt 100 ]; do
    for p in /sys/class/virtio-ports/*; do
      [ "$(cat "$p/name" 2>/dev/null)" = org.qemu.guest_agent.0 ] || continue
      port=/dev/${p##*/}
      w=0; while [ ! -c "$port" ] && [ $w -lt 50 ]; do sleep 0.1; w=$((w + 1)); done
      mkdir -p /dev/virtio-ports
      ln -sf "$port" /dev/virtio-ports/org.qemu.guest_agent.0
      qemu-ga -m virtio-serial -p /dev/virtio-ports/org.qemu.guest_agent.0 -t /var/run \
        -l /var/log/qemu-ga.log &
      pid=$!
      # Running once it holds the port open (it then only enters its main loop).
      w=0
      while [ -d "/proc/$pid" ] && [ $w -lt 100 ]; do
        ls -l "/proc/$pid/fd" 2>/dev/null | grep -q "$port" && break
        sleep 0.1; w=$((w + 1))
      done
      [ -d "/proc/$pid" ] && echo LIBVIRT-OPERATOR-GUEST-AGENT-STARTED
      wait $pid
      printf '\nLIBVIRT-OPERATOR-GUEST-AGENT-EXITED %s\n' "$?"; tail -n 5 /var/log/qemu-ga.log
      return 0
    done
    sleep 0.1; w=$((w + 1))
  done
  echo LIBVIRT-OPERATOR-GUEST-NO-AGENT-PORT
}
# Disks as "name:bytes" (the size the guest sees), so tests see hot-plug and growth.
disks() {
  for d in /sys/block/*; do
    n=${d##*/}; case $n in loop*|ram*) continue ;; esac
    printf '%s:%s ' "$n" "$(( $(cat "$d/size") * 512 ))"
  done
}
# lvo.write=<dev>:<text> on the kernel command line: write <text> at the start of /dev/<dev>,
# then 1 MiB of zeros after it (so disk statistics move), and say so.
for arg in $(cat /proc/cmdline); do
  case $arg in lvo.write=*:*)
    spec=${arg#lvo.write=}; dev=${spec%%:*}; text=${spec#*:}
    i=0; while [ ! -b "/dev/$dev" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    printf '%s' "$text" | dd of="/dev/$dev" bs=512 conv=notrunc,fsync 2>/dev/null &&
      dd if=/dev/zero of="/dev/$dev" bs=64k seek=1 count=16 conv=notrunc,fsync 2>/dev/null &&
      echo "LIBVIRT-OPERATOR-GUEST-WROTE $dev" || echo "LIBVIRT-OPERATOR-GUEST-WRITE-FAILED $dev"
  ;; esac
done
waitdev() { w=0; while [ ! -b "/dev/$1" ] && [ $w -lt 50 ]; do sleep 0.1; w=$((w + 1)); done; }
ext4dev=; counterdev=
for arg in $(cat /proc/cmdline); do
  case $arg in
    lvo.ext4=*) ext4dev=${arg#lvo.ext4=} ;;
    lvo.counter=*) counterdev=${arg#lvo.counter=} ;;
  esac
done
# lvo.ext4=<dev>: make an ext2 file system unless the ext2/3/4 superblock magic (0xEF53, at
# byte 1080) is there; the ext4 driver mounts it on /data (the guest agent freezes it).
if [ -n "$ext4dev" ]; then
  waitdev "$ext4dev"
  magic=$(dd if="/dev/$ext4dev" bs=1 skip=1080 count=2 2>/dev/null | od -An -tx1 | tr -d ' \n')
  [ "$magic" = 53ef ] || mke2fs "/dev/$ext4dev" >/dev/null 2>&1 || echo "mke2fs /dev/$ext4dev failed"
  mount -t ext4 "/dev/$ext4dev" /data && echo "LIBVIRT-OPERATOR-GUEST-MOUNTED $ext4dev" ||
    echo "LIBVIRT-OPERATOR-GUEST-MOUNT-FAILED $ext4dev"
fi
# lvo.counter=<dev>: the first sector holds "<n>\n" padded with zeros; count on from it every
# second, writing it back first, so disk and memory snapshots can be told apart on restore.
if [ -n "$counterdev" ] && [ "$counterdev" = "$ext4dev" ]; then
  echo "LIBVIRT-OPERATOR-GUEST-COUNTER-SKIPPED $counterdev"
elif [ -n "$counterdev" ]; then
  waitdev "$counterdev"
  n=$(head -c 512 "/dev/$counterdev" 2>/dev/null | tr -d '\000' | head -n 1)
  case $n in ''|*[!0-9]*) n=0 ;; esac
  n=${n#"${n%%[!0]*}"}  # no leading zeros (octal to the shell); at most 18 digits (64 bits)
  [ -n "$n" ] && [ ${#n} -le 18 ] || n=0
  echo "LIBVIRT-OPERATOR-GUEST-COUNTER-BOOT $n"
  (while sleep 1; do
    n=$((n + 1))
    printf '%s\n' "$n" | dd of="/dev/$counterdev" bs=512 count=1 conv=sync,notrunc,fsync 2>/dev/null ||
      echo "LIBVIRT-OPERATOR-GUEST-COUNTER-WRITE-FAILED $counterdev"
    echo "LIBVIRT-OPERATOR-GUEST-COUNTER $n uptime=$(cut -d' ' -f1 /proc/uptime)"
  done) &
fi
echo "LIBVIRT-OPERATOR-GUEST-DISKS $(disks)"
# lvo.fill=<dev> on the kernel command line: write zeros over all of /dev/<dev> in the background
# (storage tests: a disk larger than its pool fills the pool, and QEMU pauses the guest).
for arg in $(cat /proc/cmdline); do
  case $arg in lvo.fill=*)
    dev=${arg#lvo.fill=}
    echo "LIBVIRT-OPERATOR-GUEST-FILLING $dev"
    (dd if=/dev/zero of="/dev/$dev" bs=1M conv=fsync 2>/dev/null; echo "LIBVIRT-OPERATOR-GUEST-FILLED $dev") &
  ;; esac
done
echo LIBVIRT-OPERATOR-GUEST-BOOTED
echo "LIBVIRT-OPERATOR-GUEST-BOOTED uptime=$(cut -d' ' -f1 /proc/uptime)"
agent &
# lvo.panic on the kernel command line: the kernel panics right after booting (crash tests).
case " $(cat /proc/cmdline) " in *" lvo.panic "*)
  echo LIBVIRT-OPERATOR-GUEST-PANIC; echo c > /proc/sysrq-trigger ;; esac
# Report the disks again whenever the set changes (hot-plug, slow CD-ROM probing).
(last=$(disks); while sleep 1; do
  now=$(disks); [ "$now" = "$last" ] || printf '\nLIBVIRT-OPERATOR-GUEST-DISKS %s\n' "$now"; last=$now
done) &
# PID 1 must never exit: keep a shell on the console, restarted if it ends.
while true; do setsid cttyhack sh; sleep 1; done
EOF
chmod +x "$root/init" "$root/etc/acpi/PWRF/00000080"

rm -rf "$OUT.tmp" && mkdir -p "$OUT.tmp"
# Debian's bzImage is XZ-compressed: decompressing it under TCG costs ~5 s per boot.
# The kernel has CONFIG_PVH, so QEMU's -kernel (libvirt's <kernel>) can start the
# uncompressed ELF inside directly. "vmlinuz" is then that ELF (~65 MB), else the bzImage.
bzimage="$tmp/kernel/boot/vmlinuz-$KVER"
xz_at=$(LC_ALL=C grep -abo -m1 $'\xfd7zXZ\x00' "$bzimage" | LC_ALL=C sed -n '1s/:.*//p' || true)
if [[ "$xz_at" =~ ^[0-9]+$ ]] && grep -q '^CONFIG_PVH=y' "$tmp/kernel/boot/config-$KVER" &&
   xz -dc --single-stream < <(tail -c +$((xz_at + 1)) "$bzimage") > "$OUT.tmp/vmlinuz" 2>/dev/null &&
   [[ "$(head -c 4 "$OUT.tmp/vmlinuz")" == $'\x7fELF' ]]; then
  note "vmlinuz: uncompressed ELF, booted through PVH"
else
  cp "$bzimage" "$OUT.tmp/vmlinuz"
  note "vmlinuz: Debian's bzImage (no PVH ELF inside)"
fi
# An uncompressed cpio: inflating a gzip one under TCG costs ~0.1 s per MB (qemu-ga and its
# libraries doubled it), copying costs next to nothing.
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet > "$OUT.tmp/initramfs.img")
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
note "initramfs $(du -h "$OUT/initramfs.img" | cut -f1), built in $((SECONDS - start))s"
echo "$OUT"
