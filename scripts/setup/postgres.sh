#!/bin/sh
# Installs what the PostgreSQL index tests need: Debian's PostgreSQL server (the tests make their
# own cluster with its initdb in a temp dir and start it on a free loopback port) and its psql.
# Idempotent: installs nothing when an initdb is under /usr/lib/postgresql and psql is on PATH.
# The package's own cluster is never started: a policy-rc.d that refuses every service start is
# in place for the duration of the install.
set -eu

have_initdb=""
for f in /usr/lib/postgresql/*/bin/initdb; do
  [ -x "$f" ] && have_initdb=1
done
if [ -n "$have_initdb" ] && command -v psql >/dev/null 2>&1; then
  exit 0
fi

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
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends postgresql postgresql-client
}
# The package lists are normally fresh already; refresh them only when the install fails.
if ! install; then
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  install
fi
