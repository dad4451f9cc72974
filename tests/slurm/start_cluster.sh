#!/usr/bin/env bash
# Start a Slurm on localhost for the integration tests: munge, MariaDB, slurmdbd (the executor plugin
# reads job states from sacct, so accounting storage is required), slurmctld and two slurmd daemons on this
# host (nodes $HOST and $HOST-2, ports 6818/6828; 6819 is slurmdbd). Partition `debug` (the default) is the first node only;
# partition `multi` holds both, for the multi-node training test.
# Debian packages: slurm-wlm slurmdbd mariadb-server munge. Needs root. Idempotent.
# Exit codes: 0 ready, 3 cannot run here (not root / packages missing), 1 failed to start.
#   --install   first install the Debian packages if they are missing (apt-get; CI does this)
set -uo pipefail

if [ "${1:-}" = "--install" ] && [ "$(id -u)" -eq 0 ] && ! command -v slurmctld >/dev/null 2>&1 \
   && ! [ -x /usr/sbin/slurmctld ] && command -v apt-get >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm slurmdbd mariadb-server munge >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
         slurm-wlm slurmdbd mariadb-server munge >/dev/null; } || echo "apt-get install failed" >&2
fi

STATE=${PRA_SLURM_STATE:-/var/lib/pra-slurm}
CLUSTER=pra-test
HOST=$(hostname -s)

die_skip() { echo "SKIP: $*" >&2; exit 3; }
die() { echo "FAILED: $*" >&2; for f in "$STATE"/log/*.log; do echo "--- $f"; tail -n 20 "$f"; done >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die_skip "not root"
for b in munged mariadbd slurmdbd slurmctld slurmd sbatch sacct sacctmgr; do
  command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || die_skip "$b not installed (apt-get install slurm-wlm slurmdbd mariadb-server munge)"
done
export PATH="/usr/sbin:$PATH"

CPUS=$(nproc)
MEM=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
# KillWait: seconds between SIGTERM and SIGKILL at a time limit (30 on a stock cluster; a tiny model
# checkpoints in under one)
SLURM_CONF=$(cat <<CONF
ClusterName=$CLUSTER
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d-%n
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd-%n.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd-%n.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
KillWait=10
MinJobAge=300
NodeName=$HOST NodeHostname=$HOST Port=6818 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
NodeName=$HOST-2 NodeHostname=$HOST Port=6828 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
PartitionName=multi Nodes=$HOST,$HOST-2 MaxTime=INFINITE State=UP
CONF
)

up_nodes() { sinfo -h -N -p multi -t idle,mixed,allocated -o %N 2>/dev/null | sort -u | wc -l; }
if [ "$(up_nodes)" = "2" ] && [ "$(cat /etc/slurm/slurm.conf 2>/dev/null)" = "$SLURM_CONF" ] && sacct -n -X -S now-1minute >/dev/null 2>&1; then
  echo "ready (already running)"; exit 0
fi

mkdir -p "$STATE"/{log,spool/ctld,spool/d} /run/munge /run/mysqld /etc/slurm

# munge
[ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged || die "munged"

# MariaDB
chown -R mysql:mysql /run/mysqld /var/lib/mysql 2>/dev/null
if ! pgrep -x mariadbd >/dev/null; then
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >"$STATE/log/mariadb-install.log" 2>&1
  (mariadbd --user=mysql --skip-networking=0 --bind-address=127.0.0.1 >"$STATE/log/mariadb.log" 2>&1 &)
fi
for i in $(seq 60); do mariadb -e "select 1" >/dev/null 2>&1 && break; sleep 0.5; done
mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;" || die "mariadb"

cat > /etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/slurmdbd.pid
CONF
chmod 600 /etc/slurm/slurmdbd.conf

printf "%s\n" "$SLURM_CONF" > /etc/slurm/slurm.conf

pgrep -x slurmdbd >/dev/null || slurmdbd || die "slurmdbd"
for i in $(seq 60); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.5; done
sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1
sacctmgr -i add account pra Cluster="$CLUSTER" >/dev/null 2>&1
sacctmgr -i add user root Account=pra Cluster="$CLUSTER" >/dev/null 2>&1
# a cluster started with another configuration (e.g. a single node) is restarted with this one
pkill -x slurmd 2>/dev/null; pkill -x slurmctld 2>/dev/null
for i in $(seq 40); do pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || break; sleep 0.5; done
mkdir -p "$STATE/spool/d-$HOST" "$STATE/spool/d-$HOST-2"
slurmctld || die "slurmctld"
slurmd -N "$HOST" || die "slurmd $HOST"
slurmd -N "$HOST-2" || die "slurmd $HOST-2"
for i in $(seq 60); do
  if [ "$(up_nodes)" = "2" ]; then
    sacct -n -X -S now-1minute >/dev/null 2>&1 && { echo "ready"; exit 0; }
  fi
  sleep 1
done
die "the node did not become idle or accounting is unavailable"
