#!/bin/sh
# Installs what the SFTP backend tests need: Debian's OpenSSH server (the tests start their own
# /usr/sbin/sshd in the foreground on a free loopback port) and client (the backend runs `ssh`).
# Idempotent: installs only what is missing. The package's service is never started: a
# policy-rc.d that refuses every service start is in place for the duration of the install.
set -eu

missing=""
[ -x /usr/sbin/sshd ] || missing="$missing openssh-server"
command -v ssh >/dev/null 2>&1 || missing="$missing openssh-client"
command -v ssh-keygen >/dev/null 2>&1 || missing="$missing openssh-client"
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi

# Refuse service starts while installing (invoke-rc.d asks policy-rc.d; 101 = action forbidden).
policy=/usr/sbin/policy-rc.d
own_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  own_policy=1
fi
cleanup() {
  if [ -n "$own_policy" ]; then $SUDO rm -f "$policy"; fi
}
trap cleanup EXIT INT TERM

install() {
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing
}
# The package lists are normally fresh already; refresh them only when the install fails.
if ! install; then
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  install
fi

# Should a service manager have started it anyway, stop that daemon: the tests run their own.
if [ -f /run/sshd.pid ]; then
  $SUDO kill "$(cat /run/sshd.pid)" 2>/dev/null || true
  $SUDO rm -f /run/sshd.pid
fi
