#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for trying the SLURM profile and for
# tests/test_slurm.py. Debian/Ubuntu, as root; no systemd needed.
#
#   scripts/slurm-testbed.sh up DIR [--no-accounting]   start it; state and logs in DIR
#   source DIR/env.sh                                    point sbatch, squeue, sacct... at it
#   scripts/slurm-testbed.sh down DIR                    stop every daemon `up` started
#
# `up` installs what is missing with apt-get (slurmctld slurmd slurm-client munge; with
# accounting also slurmdbd mariadb-server), then starts munged (as the munge user), MariaDB
# and slurmdbd (accounting: `sacct` works, the executor plugin's default status command),
# slurmctld and slurmd. The node has this machine's CPUs, 3/4 of its memory and one fake GPU
# (gres gpu:1 backed by /dev/null, so GPU jobs are scheduled; they run on the CPU), in
# partition `debug`, with account `facevoice` for root. Jobs share the node
# (select/cons_tres, DefMemPerCPU), processes are tracked without cgroups
# (proctrack/linuxproc, task/none). Daemons listen on free ports of 127.0.0.1 only, munged
# on a socket of its own. One testbed at a time: its configuration is linked at
# /run/slurm/conf for the commands that jobs run. DIR/log/ holds every daemon's log, and
# DIR/log/jobcomp.log a line per finished job (with or without accounting).
set -euo pipefail

usage() { sed -n '2,8p' "$0" >&2; exit 2; }
cmd="${1:-}"; dir="${2:-}"
[ -n "$cmd" ] && [ -n "$dir" ] || usage
accounting=1
[ "${3:-}" = "--no-accounting" ] && accounting=0

log() { echo "[slurm-testbed] $*" >&2; }
die() { log "$*"; exit 1; }

# --- down ------------------------------------------------------------------------------------
stop_pidfile() {  # stop the process whose pid the file holds, if it still runs; wait for it
  local f="$1" pid i
  [ -s "$f" ] || return 0
  pid="$(tr -dc 0-9 < "$f")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || { rm -f "$f"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
  rm -f "$f"
}

if [ "$cmd" = down ]; then
  [ -d "$dir" ] || exit 0
  dir="$(cd "$dir" && pwd)"
  # cancel jobs still queued or running (their steps would outlive slurmd), then the daemons
  if [ -s "$dir/run/slurmctld.pid" ] && kill -0 "$(tr -dc 0-9 < "$dir/run/slurmctld.pid")" 2>/dev/null; then
    export SLURM_CONF="$dir/slurm.conf"
    jobs="$(timeout 10 squeue -h -t PD,R,CG,S -o %i 2>/dev/null || true)"
    if [ -n "$jobs" ]; then
      log "cancelling jobs $(echo $jobs)"
      timeout 10 scancel --full $jobs 2>/dev/null || true
      for i in $(seq 1 100); do
        [ -z "$(timeout 10 squeue -h -t PD,R,CG,S -o %i 2>/dev/null)" ] && break; sleep 0.2
      done
    fi
  fi
  for f in slurmd slurmctld slurmdbd mariadb munged; do stop_pidfile "$dir/run/$f.pid"; done
  if [ -s "$dir/rundir" ]; then rm -rf "$(cat "$dir/rundir")"; fi
  if [ "$(readlink /run/slurm/conf 2>/dev/null)" = "$dir" ]; then
    rm -f /run/slurm/conf; rmdir /run/slurm 2>/dev/null || true
  fi
  log "stopped ($dir)"
  exit 0
fi
[ "$cmd" = up ] || usage

# --- install ---------------------------------------------------------------------------------
pkgs=(slurmctld slurmd slurm-client munge)
[ "$accounting" = 1 ] && pkgs+=(slurmdbd mariadb-server)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "needs root to install ${missing[*]} (or install them first)"
  command -v apt-get >/dev/null || die "no apt-get: install ${missing[*]} by hand"
  log "installing ${missing[*]}"
  # Keep the packages' services from starting (no systemd here; this script starts them).
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt_install() { apt-get install -y -q --no-install-recommends "${missing[@]}" > "${TMPDIR:-/tmp}/slurm-testbed-apt.log" 2>&1; }
  apt_install || { apt-get update -q > /dev/null 2>&1 && apt_install; } \
    || { [ "$made_policy" = 0 ] || rm -f /usr/sbin/policy-rc.d; tail -20 "${TMPDIR:-/tmp}/slurm-testbed-apt.log" >&2; die "apt-get install failed"; }
  [ "$made_policy" = 0 ] || rm -f /usr/sbin/policy-rc.d
fi
[ "$(id -u)" = 0 ] || die "the daemons run as root here; run as root"

# --- configuration ---------------------------------------------------------------------------
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
# a failure half-way stops what was started so far
trap 'rc=$?; [ $rc = 0 ] || "$0" down "$dir"; exit $rc' EXIT
mkdir -p "$dir/state" "$dir/log" "$dir/run"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ctld_port="$(free_port)"; slurmd_port="$(free_port)"; dbd_port="$(free_port)"; db_port="$(free_port)"
host="$(hostname -s)"
cpus="$(nproc)"
mem_mb="$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.75}' /proc/meminfo)"

# Sockets live in a short folder under /run (a socket path has at most 108 characters;
# munged also checks that the munge user can reach its folder and no one else can write
# there), recorded so that `down` removes it.
rundir="$(mktemp -d /run/slurm-testbed.XXXXXX)"
echo "$rundir" > "$dir/rundir"
chmod 0755 "$rundir"
munge_dir="$rundir/munge"
mkdir -p "$munge_dir" "$rundir/spool/testnode"
chown munge:munge "$munge_dir"; chmod 0755 "$munge_dir"
socket="$munge_dir/munge.socket"
if [ ! -s /etc/munge/munge.key ]; then
  runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
    || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key; }
fi

cat > "$dir/slurm.conf" <<EOF
ClusterName=facevoice
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$rundir/spool/%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
SlurmdParameters=config_overrides
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
# finished jobs stay visible to squeue for 10 minutes (the plugin's squeue status mode)
MinJobAge=600
KillWait=5
InactiveLimit=0
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.log
JobAcctGatherType=jobacct_gather/none
GresTypes=gpu
NodeName=testnode NodeHostname=$(hostname) NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=testnode Default=YES MaxTime=INFINITE State=UP
EOF
if [ "$accounting" = 1 ]; then
  cat >> "$dir/slurm.conf" <<EOF
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$dbd_port
# clients reach slurmdbd through this munge socket (AuthInfo is not used for that)
AccountingStoragePass=$socket
AccountingStoreFlags=job_comment
AccountingStorageTRES=gres/gpu
EOF
else
  echo "AccountingStorageType=accounting_storage/none" >> "$dir/slurm.conf"
fi
echo "NodeName=testnode Name=gpu File=/dev/null" > "$dir/gres.conf"
echo "export SLURM_CONF=$dir/slurm.conf" > "$dir/env.sh"
export SLURM_CONF="$dir/slurm.conf"
# Commands run inside jobs need the configuration without SLURM_CONF (the plugin's job step
# removes SLURM_* variables from srun's environment): they look in /run/slurm/conf, where a
# configless slurmd would put it.
touch "$dir/.slurm-testbed"
if [ -L /run/slurm/conf ]; then  # a testbed's (or a dangling) link: in use while its slurmctld runs
  link="$(readlink /run/slurm/conf)"
  if [ -e "$link" ] && [ ! -e "$link/.slurm-testbed" ]; then
    die "/run/slurm/conf belongs to another SLURM setup on this machine"
  fi
  if [ -s "$link/run/slurmctld.pid" ] && kill -0 "$(tr -dc 0-9 < "$link/run/slurmctld.pid")" 2>/dev/null; then
    die "another testbed runs here ($link); stop it first: $0 down $link"
  fi
elif [ -e /run/slurm/conf ]; then
  die "/run/slurm/conf belongs to another SLURM setup on this machine"
fi
mkdir -p /run/slurm
ln -sfn "$dir" /run/slurm/conf

wait_for() {  # wait_for SECONDS WHAT COMMAND...: retry COMMAND until it succeeds
  local secs="$1" what="$2" i; shift 2
  local end=$((SECONDS + secs))
  while [ "$SECONDS" -lt "$end" ]; do timeout 10 "$@" > /dev/null 2>&1 && return 0; sleep 0.2; done
  die "$what did not come up in ${secs}s; logs in $dir/log"
}

# --- daemons ---------------------------------------------------------------------------------
runuser -u munge -- munged --socket="$socket" --pid-file="$munge_dir/munged.pid" \
  --log-file="$munge_dir/munged.log" --seed-file="$munge_dir/munged.seed"
cp "$munge_dir/munged.pid" "$dir/run/munged.pid"
wait_for 10 munged bash -c "munge -n -S '$socket' | unmunge -S '$socket'"

if [ "$accounting" = 1 ]; then
  mariadb-install-db --no-defaults --datadir="$dir/mysql" --user=root --auth-root-authentication-method=normal \
    --skip-test-db > "$dir/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed: $dir/log/mariadb-install.log"
  setsid mariadbd --no-defaults --datadir="$dir/mysql" --user=root --bind-address=127.0.0.1 --port="$db_port" \
    --socket="$dir/run/mysql.sock" --pid-file="$dir/run/mariadb.pid" --log-error="$dir/log/mariadb.log" \
    --skip-grant-tables --innodb-buffer-pool-size=64M < /dev/null > /dev/null 2>&1 &
  wait_for 30 mariadb mariadb-admin --no-defaults --socket="$dir/run/mysql.sock" ping
  cat > "$dir/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$socket
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$dbd_port
SlurmUser=root
PidFile=$dir/run/slurmdbd.pid
LogFile=$dir/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$db_port
StorageUser=root
StorageLoc=slurm_acct_db
EOF
  chmod 0600 "$dir/slurmdbd.conf"
  slurmdbd  # reads slurmdbd.conf beside $SLURM_CONF
  wait_for 30 slurmdbd sacctmgr -n show cluster
  sacctmgr -i add cluster facevoice > /dev/null
  sacctmgr -i add account facevoice Cluster=facevoice Description=testbed Organization=facevoice > /dev/null
  sacctmgr -i add user root Account=facevoice Cluster=facevoice > /dev/null
fi

slurmctld -f "$dir/slurm.conf"
wait_for 30 slurmctld bash -c "scontrol ping | grep -q UP"
slurmd -f "$dir/slurm.conf" -N testnode
wait_for 30 slurmd bash -c "sinfo -h -n testnode -o %T | grep -Eq '^(idle|mixed|allocated)'"
trap - EXIT
log "up: $cpus CPUs, $mem_mb MB, 1 fake GPU, partition debug$([ "$accounting" = 1 ] && echo ", accounting (sacct)"); source $dir/env.sh"
