#!/bin/bash
# Build the Debian 12 root filesystem the fleet benchmark boots with systemd-nspawn: the testbed
# image's packages (systemd, sshd, python3, sudo) plus the standard's toolset preinstalled, so a
# converge only writes configuration. Usage (root): bench/nspawn_rootfs.sh ROOT PUBKEY
set -euo pipefail
ROOT=$1
PUBKEY=$2
MIRROR=${MIRROR:-http://deb.debian.org/debian}
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
PACKAGES=systemd,systemd-sysv,dbus,openssh-server,python3,sudo,iproute2,libnss-myhostname
# operations/packages.py's Debian toolset (installed without Recommends, as the deploy does).
TOOLSET=podman,podman-compose,buildah,skopeo,uidmap,passt,slirp4netns,nftables,dbus-user-session,catatonit,ca-certificates
rm -rf "$ROOT.tmp"
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$ROOT.tmp" "$MIRROR"
# apt, not debootstrap, for the toolset: it resolves virtual packages (container-network-stack).
mount -t proc proc "$ROOT.tmp/proc"
trap 'umount -l "$ROOT.tmp/proc" 2>/dev/null || true' EXIT
printf '#!/bin/sh\nexit 101\n' > "$ROOT.tmp/usr/sbin/policy-rc.d"  # start no service here
chmod 755 "$ROOT.tmp/usr/sbin/policy-rc.d"
chroot "$ROOT.tmp" apt-get install -y -q --no-install-recommends ${TOOLSET//,/ }
rm -f "$ROOT.tmp/usr/sbin/policy-rc.d"
umount -l "$ROOT.tmp/proc"
chroot "$ROOT.tmp" systemctl enable ssh.service
chroot "$ROOT.tmp" systemctl mask apt-daily.timer apt-daily-upgrade.timer
chroot "$ROOT.tmp" useradd --create-home --shell /bin/bash vagrant
echo 'vagrant ALL=(ALL) NOPASSWD:ALL' > "$ROOT.tmp/etc/sudoers.d/vagrant"
chmod 440 "$ROOT.tmp/etc/sudoers.d/vagrant"
install -d -m 700 -o 1000 -g 1000 "$ROOT.tmp/home/vagrant/.ssh"
install -m 600 -o 1000 -g 1000 "$PUBKEY" "$ROOT.tmp/home/vagrant/.ssh/authorized_keys"
chroot "$ROOT.tmp" ssh-keygen -A
: > "$ROOT.tmp/etc/machine-id"
chroot "$ROOT.tmp" apt-get clean
mv "$ROOT.tmp" "$ROOT"
