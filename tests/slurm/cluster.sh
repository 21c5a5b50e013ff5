#!/usr/bin/env bash
# A real single-node SLURM cluster on localhost (Debian's slurm-wlm 22.05, munge, slurmdbd
# + MariaDB so that `sacct` works), for the SLURM profile test, CONFINED to one folder:
# nothing is installed into the system, nothing is written outside $STATE, and no SLURM
# command is on the PATH outside the test. Needs root (slurmd runs jobs as their user).
#   tests/slurm/cluster.sh install  download the .debs (slurm, munge, MariaDB and the libraries
#                                   the system lacks) with apt's lists and cache kept under
#                                   $STATE/apt, and unpack them with `dpkg -x` into $STATE/root:
#                                   dpkg's database, /etc, /usr and the users are untouched
#   tests/slurm/cluster.sh start    write configs to $STATE/etc, start munged, mariadbd, slurmdbd,
#                                   slurmctld, slurmd on free localhost ports, and write wrappers
#                                   of the client commands (sbatch, sacct, ...) to $STATE/bin:
#                                   put that on PATH to use the cluster
#   tests/slurm/cluster.sh stop     stop every daemon by its pid file and wait until all are gone
#   tests/slurm/cluster.sh clean    stop, then delete $STATE
# No systemd and no cgroups: proctrack/linuxproc and task/none work inside a container.
set -euo pipefail
STATE=${SLURM_TEST_STATE:-/tmp/lora-tradeoff-slurm}
ROOT=$STATE/root
CLUSTER=loratest
NODE=$(hostname -s)
ARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo "$(uname -m)-linux-gnu")
LIB=$ROOT/usr/lib/$ARCH
PLUGINS=$LIB/slurm-wlm
PACKAGES=(slurmctld slurmd slurm-client slurmdbd slurm-wlm-basic-plugins slurm-wlm-mysql-plugin
          munge libmunge2 mariadb-server mariadb-server-core mariadb-client-core)
DAEMONS=(slurmd slurmctld slurmdbd mysqld munged)

install() {
  if [ -x "$ROOT/usr/sbin/slurmctld-wlm" ] && [ -x "$ROOT/usr/sbin/mariadbd" ]; then
    return
  fi
  mkdir -p "$STATE/apt/lists/partial" "$STATE/apt/cache/archives/partial"
  chmod 755 "$STATE"  # munged wants every folder above its socket searchable by all
  local apt=(apt-get -qq -o "Dir::State::Lists=$STATE/apt/lists" -o "Dir::Cache=$STATE/apt/cache"
             -o Debug::NoLocking=1)
  "${apt[@]}" update
  # --reinstall: the named packages are fetched even when the system has them; their missing
  # dependencies are fetched too, those the system has are used from the system
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --download-only --reinstall \
    --no-install-recommends "${PACKAGES[@]}" >/dev/null
  mkdir -p "$ROOT"
  for deb in "$STATE"/apt/cache/archives/*.deb; do dpkg -x "$deb" "$ROOT"; done
  rm -rf "$STATE/apt"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() {  # wait_for SECONDS COMMAND...
  local limit=$1; shift
  for _ in $(seq "$limit"); do timeout 10 "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  echo "timed out waiting for: $*" >&2; return 1
}

wrappers() {  # $STATE/bin/<command>: the unpacked client with its libraries and our config
  mkdir -p "$STATE/bin"
  for cmd in sbatch squeue sacct sinfo scontrol scancel srun sacctmgr salloc sstat; do
    printf '#!/bin/sh\nLD_LIBRARY_PATH=%s:%s SLURM_CONF=%s exec %s "$@"\n' \
      "$LIB" "$PLUGINS" "$STATE/etc/slurm.conf" "$ROOT/usr/bin/$cmd" >"$STATE/bin/$cmd"
    chmod 755 "$STATE/bin/$cmd"
  done
}

start() {
  mkdir -p "$STATE"/{spool/ctld,spool/d,log,etc,run,munge,mysql}
  chmod 755 "$STATE" "$STATE/run"; chmod 700 "$STATE/munge"
  export LD_LIBRARY_PATH=$LIB:$PLUGINS SLURM_CONF=$STATE/etc/slurm.conf
  local munge_socket=$STATE/run/munge.socket
  if [ ! -f "$STATE/munge/munge.key" ]; then
    dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 2>/dev/null
    chmod 400 "$STATE/munge/munge.key"
  fi
  "$ROOT/usr/sbin/munged" --key-file="$STATE/munge/munge.key" --socket="$munge_socket" \
    --pid-file="$STATE/run/munged.pid" --log-file="$STATE/log/munged.log" \
    --seed-file="$STATE/munge/munged.seed"
  wait_for 20 sh -c "'$ROOT/usr/bin/munge' -S '$munge_socket' -n | '$ROOT/usr/bin/unmunge' -S '$munge_socket'"

  local db_port ctld_port d_port dbd_port
  db_port=$(free_port); ctld_port=$(free_port); d_port=$(free_port); dbd_port=$(free_port)
  local mariadb=(--no-defaults --basedir="$ROOT/usr" --datadir="$STATE/mysql" --user=root)
  [ -d "$STATE/mysql/mysql" ] || "$ROOT/usr/bin/mariadb-install-db" "${mariadb[@]}" \
    --auth-root-authentication-method=normal --skip-test-db >"$STATE/log/mariadb-install-db.log" 2>&1
  ("$ROOT/usr/sbin/mariadbd" "${mariadb[@]}" --socket="$STATE/run/mysqld.sock" \
     --pid-file="$STATE/run/mysqld.pid" --bind-address=127.0.0.1 --port="$db_port" \
     --lc-messages-dir="$ROOT/usr/share/mariadb" --log-error="$STATE/log/mysqld.log" \
     --skip-log-bin >/dev/null 2>&1 &)
  local mysql=("$ROOT/usr/bin/mariadb" --no-defaults -S "$STATE/run/mysqld.sock" -uroot)
  wait_for 60 "${mysql[@]}" -e "SELECT 1"
  "${mysql[@]}" -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
            CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmpw';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"

  local cpus mem
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 3 / 4 ))
  cat >"$STATE/etc/slurmdbd.conf" <<CONF
AuthType=auth/munge
AuthInfo=socket=$munge_socket
PluginDir=$PLUGINS
DbdHost=localhost
DbdPort=$dbd_port
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$db_port
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
CONF
  chmod 600 "$STATE/etc/slurmdbd.conf"
  cat >"$SLURM_CONF" <<CONF
ClusterName=$CLUSTER
SlurmctldHost=$NODE
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$munge_socket
PluginDir=$PLUGINS
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$dbd_port
AccountingStoragePass=$munge_socket
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
MailProg=/bin/true
MinJobAge=600
ReturnToService=2
NodeName=$NODE CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
  wrappers
  local bin=$STATE/bin
  "$ROOT/usr/sbin/slurmdbd"
  wait_for 30 "$bin/sacctmgr" -n list cluster
  "$bin/sacctmgr" -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
  "$bin/sacctmgr" -i add account lora Cluster="$CLUSTER" >/dev/null 2>&1 || true
  "$bin/sacctmgr" -i add user root Account=lora >/dev/null 2>&1 || true
  # Debian installs the daemons as *-wlm with a symlink of the plain name, which Slurm needs:
  # it tells which daemon it is by its program name
  mkdir -p "$STATE/sbin"
  for daemon in slurmctld slurmd slurmstepd; do
    ln -sf "$ROOT/usr/sbin/$daemon-wlm" "$STATE/sbin/$daemon"
  done
  "$STATE/sbin/slurmctld"
  # -d: slurmd starts the slurmstepd unpacked here, not /usr/sbin/slurmstepd
  "$STATE/sbin/slurmd" -d "$STATE/sbin/slurmstepd"
  wait_for 60 sh -c "'$bin/sinfo' -h -o %T | grep -Eq '^(idle|mixed|allocated)'"
  echo "SLURM cluster $CLUSTER up on $NODE ($cpus CPUs, ${mem} MB); PATH=$bin:\$PATH to use it"
}

stop() {
  local pids=() pid
  for daemon in "${DAEMONS[@]}"; do
    pid=$(cat "$STATE/run/$daemon.pid" 2>/dev/null) || continue
    kill "$pid" 2>/dev/null && pids+=("$pid")
  done
  for _ in $(seq 30); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && return 0
    sleep 1
  done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  return 0
}

leftovers() {  # pids of processes still running a program unpacked under $ROOT (e.g. slurmstepd)
  local exe target
  for exe in /proc/[0-9]*/exe; do
    target=$(readlink "$exe" 2>/dev/null) || continue
    case $target in "$ROOT"/*) exe=${exe#/proc/}; echo "${exe%/exe}" ;; esac
  done
}

clean() {
  stop
  local pid
  for pid in $(leftovers); do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$STATE"
}

"$@"
