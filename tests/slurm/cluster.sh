#!/usr/bin/env bash
# A real single-node SLURM cluster on localhost (Debian's slurm-wlm 22.05, munge, slurmdbd
# + MariaDB so that `sacct` works), for the SLURM profile test. Needs root.
#   tests/slurm/cluster.sh install   apt-get the packages (skipped when present)
#   tests/slurm/cluster.sh start     write configs, start munged, mariadb, slurmdbd, slurmctld, slurmd
#   tests/slurm/cluster.sh stop      stop every daemon by its pid file
# No systemd and no cgroups: proctrack/linuxproc and task/none work inside a container.
set -euo pipefail
STATE=${SLURM_TEST_STATE:-/tmp/lora-tradeoff-slurm}
CLUSTER=loratest
NODE=$(hostname -s)

install() {
  if command -v slurmctld >/dev/null && command -v slurmdbd >/dev/null && command -v mysqld_safe >/dev/null; then
    return
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurm-wlm munge slurmdbd mariadb-server >/dev/null
}

wait_for() {  # wait_for SECONDS COMMAND...
  local limit=$1; shift
  for _ in $(seq "$limit"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  echo "timed out waiting for: $*" >&2; return 1
}

start() {
  mkdir -p "$STATE"/{spool/ctld,spool/d,log} /etc/slurm /run/munge /run/mysqld
  chown munge:munge /run/munge; chown mysql:mysql /run/mysqld
  [ -f /etc/munge/munge.key ] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null;
                                    chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
  pgrep -x munged >/dev/null || su -s /bin/sh munge -c "/usr/sbin/munged --pid-file=/run/munge/munged.pid"
  wait_for 20 sh -c "munge -n | unmunge"

  if ! pgrep -x mariadbd >/dev/null && ! pgrep -x mysqld >/dev/null; then
    (mysqld_safe --user=mysql --pid-file=/run/mysqld/mysqld.pid >"$STATE/log/mysqld.log" 2>&1 &)
  fi
  wait_for 60 mysqladmin ping
  mysql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
            CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"

  local cpus mem
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 3 / 4 ))
  cat >/etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
CONF
  chmod 600 /etc/slurm/slurmdbd.conf
  cat >/etc/slurm/slurm.conf <<CONF
ClusterName=$CLUSTER
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
MinJobAge=600
ReturnToService=2
NodeName=$NODE CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
  pgrep -x slurmdbd >/dev/null || slurmdbd
  wait_for 30 sacctmgr -n list cluster
  sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
  sacctmgr -i add account lora Cluster="$CLUSTER" >/dev/null 2>&1 || true
  sacctmgr -i add user root Account=lora >/dev/null 2>&1 || true
  pgrep -x slurmctld >/dev/null || slurmctld
  pgrep -x slurmd >/dev/null || slurmd
  wait_for 60 sh -c "sinfo -h -o %T | grep -Eq '^(idle|mixed|allocated)'"
  echo "SLURM cluster $CLUSTER up on $NODE ($cpus CPUs, ${mem} MB)"
}

stop() {
  for pid_file in "$STATE/slurmd.pid" "$STATE/slurmctld.pid" "$STATE/slurmdbd.pid"; do
    [ -f "$pid_file" ] && kill "$(cat "$pid_file")" 2>/dev/null || true
  done
  mysqladmin shutdown 2>/dev/null || true
  [ -f /run/munge/munged.pid ] && kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
  return 0
}

"$@"
