#!/usr/bin/env bash
# The Debian package end to end: builds it (dpkg-buildpackage, in a copy of the tree), checks it with lintian
# and the unit with systemd-analyze, installs it into a clean Debian 12 root made with debootstrap, starts
# offloadd there in a network namespace with the unit's own command line and checks that offloadctl talks to it,
# that it tells systemd (sd_notify) it is ready only once its queues are bound, and around a reload; upgrades to
# a second build with a higher version while FTP transfers and a long stream run through the daemon (they must
# complete intact, nothing untranslated on the WAN) and checks the administrator's edits survive; removes and purges it and
# checks that nothing is left: no file, no iptables rule, no ipset set.
#
# systemd does not run as PID 1 in a chroot: the maintainer scripts run as Debian runs them there (policy-rc.d
# denies service actions, deb-systemd-helper only records state), and the daemon is started by hand with the
# ExecStart= of the installed unit and the variables of its EnvironmentFile=.
#
# Prints one line per check, "ok - what" or "not ok - what: details" (lines starting with "# " are
# information), and ends with the line "N passed, N failed"; exits non-zero if any check failed.
#
# Usage: tests/package/test-deb.sh        (as root; needs the .NET SDK and tests/lab/packages.txt)
# Environment: LAB_SUFFIX (default -deb) names the network namespace; KEEP_WORK=1 keeps the work directory
# (DEB_REUSE=that directory then skips the two builds);
# DEB_CACHE (default /var/cache/offload-test-deb) keeps the debootstrap root and downloaded packages between
# runs; DEB_MIRROR (default: the Debian mirror this machine's apt sources name) is where they come from.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
sfx=${LAB_SUFFIX--deb}
# The lab's client, router and server namespaces (tests/lab/lab.sh); the package runs in the router. The shared
# transfers and capture checks come with it; this script's own reporting functions below replace the harness's.
# shellcheck source=tests/lab/lab.sh
. "$repo/tests/lab/lab.sh"
# shellcheck source=tests/lab/harness.sh
. "$repo/tests/lab/harness.sh"
# shellcheck source=tests/lab/transfers.sh
. "$repo/tests/lab/transfers.sh"
ns=$(lab_ns router "$sfx")
suite=bookworm
cache=${DEB_CACHE:-/var/cache/offload-test-deb}

passed=0
failed=0
finished=0
err_line=
work=
root=
mounts=()
pids=()
daemon_pid=
dlog=

# --- reporting -------------------------------------------------------------------------

ok() {
    passed=$((passed + 1))
    echo "ok - $1"
}

not_ok() {
    failed=$((failed + 1))
    echo "not ok - $1: $2"
}

# check WHAT COMMAND... : ok if the command succeeds, not ok (with its output's last lines) otherwise.
check() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then
        ok "$what"
    else
        not_ok "$what" "$(tail -n 5 <<<"$out" | tr '\n' ' ')"
    fi
}

info() { echo "# $*"; }

die() {
    echo "test-deb: $*" >&2
    exit 1
}

# --- cleanup: stop what we started, unmount the chroot, drop the namespace -----------------

cleanup() {
    local rc=$? pid i
    trap - EXIT INT TERM
    set +e
    for pid in $daemon_pid "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in $daemon_pid "${pids[@]}"; do
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
        umount -l "${mounts[i]}" 2>/dev/null
    done
    h_capture_stop >/dev/null
    lab_down "$sfx" 2>/dev/null
    if ((failed > 0 || !finished)) && [[ -s ${dlog:-} ]]; then
        tail -n 15 "$dlog" | sed 's/^/# offloadd: /'
    fi
    if [[ -n $work ]]; then
        if [[ ${KEEP_WORK:-} == 1 ]]; then
            echo "test-deb: work directory kept: $work" >&2
        else
            rm -rf --one-file-system -- "$work"
        fi
    fi
    if ((!finished)); then
        not_ok "the test ran to its end" "aborted (exit $rc${err_line:+, line $err_line})"
    fi
    echo "$passed passed, $failed failed"
    if ((failed > 0)); then exit 1; fi
    exit 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'err_line=$LINENO' ERR

((EUID == 0)) || die "must run as root (chroot, network namespace)"
for tool in dpkg-buildpackage dpkg-parsechangelog dch lintian debootstrap dotnet scdoc python3 ip iptables-save \
    ip6tables-save ipset chroot git vsftpd curl dumpcap tshark; do
    command -v "$tool" >/dev/null || die "missing tool '$tool' (install tests/lab/packages.txt)"
done
[[ -d /usr/share/doc/debhelper ]] || die "debhelper is missing (install tests/lab/packages.txt)"

work=$(mktemp -d /tmp/ol-deb.XXXXXX)
t_start=$SECONDS

# --- build --------------------------------------------------------------------------------

# A copy of the tree as git sees it (tracked and new files, not what .gitignore names): the build's own files
# (debian/.build, the .deb next to the tree) never land in the repository.
mkdir "$work/src"
git -C "$repo" ls-files -z --cached --others --exclude-standard |
    (cd "$repo" && tar --null --files-from=- --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$work/src"

arch=$(dpkg --print-architecture)
v1=$(dpkg-parsechangelog -l "$work/src/debian/changelog" -S Version)
v2=$v1+test1

# build VERSION : dpkg-buildpackage -b in the copy; the .deb lands in $work. DEB_REUSE=DIR takes the files of
# an earlier run kept with KEEP_WORK=1 instead (to work on the later steps), and counts no check.
build() {
    local t=$SECONDS
    if [[ -n ${DEB_REUSE:-} ]]; then
        cp "$DEB_REUSE/offload_$1_$arch".{deb,changes,buildinfo} "$work/" || die "no offload $1 in $DEB_REUSE"
        info "reused $DEB_REUSE/offload_$1_$arch.deb"
        return 0
    fi
    if (cd "$work/src" && dpkg-buildpackage -b -us -uc) >"$work/build-$1.log" 2>&1 && [[ -f $work/offload_$1_$arch.deb ]]; then
        ok "dpkg-buildpackage builds offload $1 ($((SECONDS - t)) s)"
    else
        not_ok "dpkg-buildpackage builds offload $1" "see below"
        tail -n 25 "$work/build-$1.log" | sed 's/^/# build: /'
        exit 1
    fi
}
build "$v1"

# Errors fail, and so do warnings: the ones accepted are overridden in debian/offload.lintian-overrides, each
# with its reason.
if lintian_out=$(lintian --fail-on error,warning --no-tag-display-limit "$work/offload_${v1}_$arch.changes" 2>&1); then
    ok "lintian: no error, no warning"
else
    not_ok "lintian: no error, no warning" "$(grep -E '^[EW]:' <<<"$lintian_out" | head -n 10 | tr '\n' ' ')"
fi
grep -E '^[EWIO]:' <<<"$lintian_out" | sed 's/^/# lintian: /' || true

# The maintainer scripts debhelper wrote for the service: an upgrade restarts it if it runs (try-restart, after
# unpacking), nothing stops it before; installation neither starts it nor enables it (enable runs only for a
# unit that was enabled before: deb-systemd-helper debian-installed).
mkdir "$work/control"
dpkg-deb -e "$work/offload_${v1}_$arch.deb" "$work/control"
if grep -q "deb-systemd-invoke try-restart 'offloadd.service'" "$work/control/postinst" &&
    grep -q "deb-systemd-helper debian-installed 'offloadd.service'" "$work/control/postinst" &&
    ! grep -qE "deb-systemd-invoke (start|restart) |_dh_action=start" "$work/control/postinst" &&
    ! grep -q 'deb-systemd-invoke stop' "$work/control/preinst" 2>/dev/null; then
    ok "maintainer scripts: try-restart after an upgrade, no stop before it, no enable or start on installation"
else
    not_ok "maintainer scripts: try-restart after an upgrade, no stop before it, no enable or start" "$(grep -h deb-systemd "$work"/control/*inst 2>/dev/null | tr '\n' ' ')"
fi

# The second build: a newer version whose default configuration differs too, so that the upgrade meets a
# conffile changed on both sides (the harder case for "the administrator's edits survive").
(cd "$work/src" && DEBFULLNAME="Offload CI" DEBEMAIL="ci@invalid" dch -v "$v2" -D "$suite" --force-distribution "Upgrade test build." >/dev/null 2>&1)
echo "# (upgrade test build $v2: a new comment line)" >>"$work/src/packaging/offloadd.yaml"
build "$v2"
deb1=$work/offload_${v1}_$arch.deb
deb2=$work/offload_${v2}_$arch.deb

# --- a clean Debian 12 root ------------------------------------------------------------------

# The Debian mirror this machine's apt uses: a "deb URI SUITE" line or a deb822 stanza whose suite is the
# machine's own release (not -security or -updates). It must serve bookworm.
find_mirror() {
    local codename
    # shellcheck source=/dev/null
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-$suite}")
    {
        cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | sed -E 's/\[[^]]*\]//' |
            awk -v s="$codename" '$1 == "deb" && $3 == s { print $2 }'
        cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v s="$codename" '
            function flush() { if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " s " ")) { split(uris, u, " "); print u[1] } types = uris = suites = "" }
            /^[ \t]*$/ { flush(); next }
            /^Types:/ { sub(/^Types:[ \t]*/, ""); types = $0 }
            /^URIs:/ { sub(/^URIs:[ \t]*/, ""); uris = $0 }
            /^Suites:/ { sub(/^Suites:[ \t]*/, ""); suites = $0 }
            END { flush() }'
    } | grep -E '^https?://' | head -n 1
}
mirror=${DEB_MIRROR:-$(find_mirror)}
[[ -n $mirror ]] || die "no Debian mirror in /etc/apt/sources.list{,.d}: set DEB_MIRROR"

# The root is made once per suite and mirror and kept: each run copies it. systemd is included as on a router
# (its systemd-analyze checks the unit as Debian 12 reads it, systemd-tmpfiles runs our tmpfiles.d entry), but
# never runs: maintainer scripts only see it installed.
key=$(printf '%s %s minbase systemd' "$suite" "$mirror" | sha1sum | cut -c1-12)
base=$cache/$suite-minbase-$key
mkdir -p "$cache/debs" "$cache/archives/partial"
if [[ ! -x $base/usr/bin/apt-get ]]; then
    info "debootstrap $suite from $mirror into $base (once)"
    rm -rf --one-file-system "$base.new"
    if ! debootstrap --variant=minbase --include=systemd --cache-dir="$cache/debs" "$suite" "$base.new" "$mirror" >"$work/debootstrap.log" 2>&1; then
        tail -n 15 "$work/debootstrap.log" | sed 's/^/# debootstrap: /'
        die "debootstrap failed"
    fi
    mv "$base.new" "$base"
fi
root=$work/root
cp -a "$base" "$root"

mount_in_root() { # TARGET then mount arguments
    local target=$root$1
    shift
    mount "$@" "$target"
    mounts+=("$target")
}
mount_in_root /proc -t proc proc
mount_in_root /sys -t sysfs sysfs
mount_in_root /dev --bind /dev
mount_in_root /dev/pts --bind /dev/pts
# Its own /run: the host's would tell maintainer scripts that systemd runs (/run/systemd/system).
mount_in_root /run -t tmpfs tmpfs
mount_in_root /var/cache/apt/archives --bind "$cache/archives"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# As in any Debian chroot: services are not started or stopped by package scripts (invoke-rc.d,
# deb-systemd-invoke ask this).
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"

# running PID : the process exists and has not exited (a child of ours that exited stays a zombie until waited for).
running() { [[ -r /proc/$1/stat ]] && [[ $(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) != Z ]]; }
in_root() { chroot "$root" /usr/bin/env -i --default-signal=HUP PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"; }
# The router's network: a namespace with the interfaces the default configuration names. Entered with nsenter,
# not `ip netns exec`, which also gives each command a mount namespace of its own: prerm's start-stop-daemon finds
# the daemon by its executable, whose path it could not resolve across mount namespaces. (innet is not for a
# command put in the background whose pid is needed: a function runs there in a subshell; nsenter, chroot and
# env each exec the next, so with them $! is the daemon's own pid.)
innet=(nsenter "--net=/run/netns/$ns")
in_ns() { "${innet[@]}" "$@"; }

# The router's lan0 and wan0 (the shipped configuration's names) lead to a client and a server, for the transfers
# that run through the upgrade.
lab_up "$sfx" 2>/dev/null || die "the lab's namespaces could not be made"

# --- install ---------------------------------------------------------------------------------

cp "$deb1" "$deb2" "$root/tmp/"
if ! in_root apt-get update -qq >"$work/apt.log" 2>&1; then
    tail -n 10 "$work/apt.log" | sed 's/^/# apt: /'
    die "apt-get update failed in the root"
fi
check "apt installs offload $v1 into a clean Debian 12 root, dependencies from the mirror" \
    in_root apt-get install -y -q --no-install-recommends "/tmp/${deb1##*/}"
# shellcheck disable=SC2016 # dpkg-query's own ${field} syntax
installed_version() { in_root dpkg-query -W -f='${db:Status-Status} ${Version}' offload 2>/dev/null || true; }
[[ $(installed_version) == "installed $v1" ]] || die "offload $v1 is not installed: $(installed_version)"

check "the root has no .NET: offloadd and offloadctl carry their runtime" \
    bash -c "! chroot '$root' sh -c 'command -v dotnet' && [[ ! -e '$root/usr/share/dotnet' && ! -e '$root/usr/lib/dotnet' ]]"
version_out=$(in_root offloadd --version 2>&1 || true)
if [[ $version_out == "$v1" ]]; then ok "offloadd --version prints the package version ($v1)"; else not_ok "offloadd --version prints the package version" "$version_out"; fi
check "offloadctl runs (offloadctl --help)" in_root offloadctl --help
check "the shipped /etc/offload/offloadd.yaml passes offloadd --check" in_root offloadd --check
# Every example the shipped configuration keeps in comments is valid too, so that uncommenting one never breaks it.
sed -E 's/^([[:space:]]*)# ([[:space:]]*(- )?[a-z][a-z0-9-]*:([[:space:]]|$))/\1\2/' "$root/etc/offload/offloadd.yaml" >"$root/tmp/all-examples.yaml"
check "the shipped configuration with its commented examples turned on passes offloadd --check" \
    in_root offloadd --check --config /tmp/all-examples.yaml
files=$(in_root dpkg -L offload)
# shellcheck disable=SC2016
conffiles=$(in_root dpkg-query -W -f='${Conffiles}' offload)
missing=
for f in /etc/offload/offloadd.yaml /etc/offload/helpers.d/README /etc/default/offload; do
    grep -q "^ $f " <<<"$conffiles" || missing+="$f "
done
if [[ -z $missing ]]; then ok "the configuration files are conffiles"; else not_ok "the configuration files are conffiles" "not: $missing"; fi
missing=
for f in /usr/share/man/man8/offloadd.8.gz /usr/share/man/man8/offloadctl.8.gz /usr/share/man/man5/offloadd.yaml.5.gz \
    /usr/sbin/offloadd /usr/bin/offloadctl /lib/systemd/system/offloadd.service /usr/lib/tmpfiles.d/offload.conf; do
    grep -qx "$f" <<<"$files" || missing+="$f "
done
if [[ -z $missing ]]; then ok "the package installs the man pages, both commands, the unit and its tmpfiles.d entry"; else not_ok "the package installs the man pages, both commands, the unit and its tmpfiles.d entry" "missing: $missing"; fi
check "postinst created /run/xtables.lock (systemd-tmpfiles, for iptables-legacy in the sandbox)" test -f "$root/run/xtables.lock"
# Strict modes (docs/helpers.md): offloadd loads a plugin only when root alone can change it and every directory
# above it. The plugin directory ships ready for that, and nothing the daemon runs can be changed by another user.
modes=$(cd "$root" && stat -c '/%n %U:%G %a' etc etc/offload etc/offload/helpers.d etc/offload/helpers.d/README 2>&1)
expected=$'/etc root:root 755\n/etc/offload root:root 755\n/etc/offload/helpers.d root:root 755\n/etc/offload/helpers.d/README root:root 644'
if [[ $modes == "$expected" ]]; then
    ok "/etc/offload/helpers.d is installed root:root 0755 (strict modes), its README 0644"
else
    not_ok "/etc/offload/helpers.d is installed root:root 0755" "$(tr '\n' ' ' <<<"$modes")"
fi
loose=$(cd "$root" && find usr/lib/offload etc/offload lib/systemd/system/offloadd.service \( ! -user root -o -perm /022 \) -printf '/%p %u %m ' 2>&1)
if [[ -z $loose ]]; then
    ok "no file or directory of the daemon's code, configuration or plugins is writable by anyone but root"
else
    not_ok "nothing of the daemon is writable by anyone but root" "$loose"
fi
# Not enabled on installation: the example interfaces must be replaced first (debian/rules says why).
check "the service is installed but not enabled" \
    bash -c "[[ -z \$(find '$root/etc/systemd/system' -name offloadd.service) ]]"

unit=$root/lib/systemd/system/offloadd.service
# Debian 12's own systemd-analyze (252) in the root, where every binary the unit names is: it exits 0 even when
# it ignores a setting it does not know, so any message fails the check too. The man pages named in
# Documentation= are checked above (man is not installed in the root).
if verify_out=$(in_root systemd-analyze verify --man=no offloadd.service 2>&1) && [[ -z $verify_out ]]; then
    ok "systemd-analyze verify (systemd $(in_root systemd-analyze --version | awk 'NR == 1 { print $2 }')) accepts offloadd.service"
else
    not_ok "systemd-analyze verify accepts offloadd.service" "$(tr '\n' ' ' <<<"$verify_out")"
fi

# --- the daemon, started as the unit starts it ----------------------------------------------------

# unit_command : the words of the installed unit's ExecStart=, with its variables as systemd sets them:
# Environment= first, then the EnvironmentFile= (a leading '-': it may be absent) read in the root. "$VAR"
# splits into words, "${VAR}" stays one.
unit_command() {
    local line name value word file
    local -A env=()
    local -a words=() out=()
    while IFS= read -r line; do
        case $line in
        Environment=*)
            line=${line#Environment=}
            env[${line%%=*}]=${line#*=}
            ;;
        EnvironmentFile=*)
            file=${line#EnvironmentFile=}
            file=${file#-}
            [[ -f $root$file ]] || continue
            while IFS= read -r line; do
                [[ $line =~ ^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
                name=${BASH_REMATCH[1]}
                value=${BASH_REMATCH[2]}
                if [[ $value =~ ^\"(.*)\"$ || $value =~ ^\'(.*)\'$ ]]; then value=${BASH_REMATCH[1]}; fi
                env[$name]=$value
            done <"$root$file"
            ;;
        ExecStart=*)
            read -ra words <<<"${line#ExecStart=}"
            ;;
        esac
    done <"$unit"
    for word in "${words[@]}"; do
        if [[ $word =~ ^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$ ]]; then
            out+=("${env[${BASH_REMATCH[1]}]-}")
        elif [[ $word =~ ^\$([A-Za-z_][A-Za-z0-9_]*)$ ]]; then
            read -ra value <<<"${env[${BASH_REMATCH[1]}]-}"
            out+=("${value[@]}")
        else
            out+=("$word")
        fi
    done
    printf '%s\n' "${out[@]}"
}

# A datagram socket in the namespace standing in for systemd's notify socket; each message is logged with
# CLOCK_MONOTONIC at its arrival, and on READY=1 the kernel's list of bound queues is recorded at once.
cat >"$work/notify.py" <<'EOF'
import os, socket, sys, time
name, log = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + name[1:] if name.startswith("@") else name)
open(log + ".bound", "w").close()
with open(log, "a", buffering=1) as out:
    while True:
        data = s.recv(4096).decode(errors="replace")
        now = time.monotonic_ns() // 1000
        if "READY=1" in data.split("\n"):
            with open("/proc/net/netfilter/nfnetlink_queue") as q, open(log + ".queues", "a") as snap:
                snap.write(q.read() + "--\n")
        out.write("%d %s\n" % (now, data.replace("\n", "|")))
EOF

# Runs a command with its standard output a stream socket named by $JOURNAL_STREAM, as systemd's journal
# stream is; the word @JOURNAL_STREAM@ in the command becomes JOURNAL_STREAM=device:inode. What it writes goes
# to LOG; the command's pid to LOG.pid.
cat >"$work/journal.py" <<'EOF'
import os, socket, subprocess, sys
log, command = sys.argv[1], sys.argv[2:]
ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
st = os.fstat(theirs.fileno())
command = [f"JOURNAL_STREAM={st.st_dev}:{st.st_ino}" if w == "@JOURNAL_STREAM@" else w for w in command]
child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=theirs, stderr=theirs)
theirs.close()
with open(log + ".pid", "w") as f:
    f.write(str(child.pid))
with open(log, "ab", buffering=0) as out:
    while data := ours.recv(65536):
        out.write(data)
sys.exit(child.wait())
EOF

# start_listener NAME LOG : the notify socket NAME (@ for abstract) in the namespace, logging to LOG.
start_listener() {
    rm -f "$2" "$2.bound" "$2.queues"
    "${innet[@]}" python3 "$work/notify.py" "$1" "$2" &
    pids+=($!)
    for _ in $(seq 1 50); do
        [[ -e $2.bound ]] && return 0
        sleep 0.1
    done
    die "the notify listener did not start"
}

# wait_for FILE REGEX [TIMEOUT] : until a line of FILE matches; prints it. Fails when the daemon exits first.
wait_for() {
    local file=$1 regex=$2 deadline=$((SECONDS + ${3:-30})) line
    while :; do
        line=$(grep -E -m1 -- "$regex" "$file" 2>/dev/null || true)
        if [[ -n $line ]]; then
            printf '%s\n' "$line"
            return 0
        fi
        if [[ -n $daemon_pid ]] && ! running "$daemon_pid"; then return 1; fi
        ((SECONDS < deadline)) || return 1
        sleep 0.05
    done
}

# stop_daemon : SIGTERM as systemd stops it; sets stop_rc to its exit code ("still running" after 20 s).
stop_rc=
stop_daemon() {
    # systemd waits 90 s (TimeoutStopSec's default) before it kills a service that does not stop: 60 here.
    local waited
    kill -TERM "$daemon_pid"
    for waited in $(seq 1 600); do
        running "$daemon_pid" || break
        sleep 0.1
    done
    if running "$daemon_pid"; then
        stop_rc="still running after 60 s"
        return 0
    fi
    if ((waited > 100)); then
        info "offloadd took $((waited / 10)) s to stop"
    fi
    stop_rc=0
    wait "$daemon_pid" || stop_rc=$?
    daemon_pid=
}

steering_rules() { { in_ns iptables-save && in_ns ip6tables-save; } 2>/dev/null | grep -E 'OFFLOAD' || true; }
offload_sets() { in_ns ipset list -n 2>/dev/null | grep -E '^offload' || true; }
queue_bound() { awk -v q="$2" '$1 == q { found = 1 } END { exit !found }' "$1"; }

mapfile -t cmd < <(unit_command)
info "ExecStart as the unit runs it: ${cmd[*]}"
if [[ ${cmd[0]} == /usr/sbin/offloadd && " ${cmd[*]} " == *" --apply-rules "* ]]; then
    ok "the unit runs /usr/sbin/offloadd with --apply-rules by default (Environment=, /etc/default/offload)"
else
    not_ok "the unit runs /usr/sbin/offloadd with --apply-rules by default" "${cmd[*]}"
fi

# The administrator's edit: other queue numbers (and a marker), which must survive the upgrade.
sed -i -e 's/^\(  queue-pre:\) 0 /\1 10 /' -e 's/^\(  queue-post:\) 16 /\1 11 /' "$root/etc/offload/offloadd.yaml"
echo "# edited by the administrator" >>"$root/etc/offload/offloadd.yaml"
grep -q '^  queue-pre: 10 ' "$root/etc/offload/offloadd.yaml" && grep -q '^  queue-post: 11 ' "$root/etc/offload/offloadd.yaml" || die "the configuration edit did not apply"

# A helper plugin as the administrator drops it: the walk-through's single .cs file, compiled by the packaged
# (self-contained, ReadyToRun) daemon with no .NET SDK on the machine.
install -m 0644 "$repo/examples/helpers/callback/CallbackHelper.cs" "$root/etc/offload/helpers.d/CallbackHelper.cs"

notify=$work/notify.log
dlog=$work/offloadd.log
start_listener "@ol-notify$sfx" "$notify"
"${innet[@]}" chroot "$root" /usr/bin/env -i --default-signal=HUP PATH=/usr/sbin:/usr/bin:/sbin:/bin NOTIFY_SOCKET="@ol-notify$sfx" "${cmd[@]}" \
    </dev/null >"$dlog" 2>&1 &
daemon_pid=$!
if ready=$(wait_for "$notify" 'READY=1' 40); then
    ok "offloadd started in the root tells systemd READY=1 (${ready#* })"
else
    not_ok "offloadd started in the root tells systemd READY=1" "no READY=1; log: $(tail -n 3 "$dlog" | tr '\n' ' ')"
    exit 1
fi
if queue_bound "$notify.queues" 10 && queue_bound "$notify.queues" 11; then
    ok "when READY=1 arrived, queues 10 and 11 (the administrator's) were bound"
else
    not_ok "when READY=1 arrived, the queues were bound" "$(tr '\n' ' ' <"$notify.queues")"
fi
first=$(head -n 1 "$notify" | cut -d' ' -f2-)
if [[ $first == READY=1* ]]; then ok "nothing claimed readiness before: READY=1 is the first message"; else not_ok "READY=1 is the first message" "$first"; fi
rules=$(steering_rules)
if grep -q -- '-A PREROUTING -j OFFLOAD-PRE' <<<"$rules" && grep -q -- '-A POSTROUTING -j OFFLOAD-POST' <<<"$rules" && grep -q -- '--queue-num 10' <<<"$rules"; then
    ok "the service's default --apply-rules applied the steering rules"
else
    not_ok "the service's default --apply-rules applied the steering rules" "$(tr '\n' ' ' <<<"$rules")"
fi
stats=$(in_root offloadctl stats 2>&1 || true)
if grep -q '^queue 10 (pre routing): packets 0' <<<"$stats" && grep -q '^queue 11 (post routing): packets 0' <<<"$stats" && grep -q '^table: 0 connections' <<<"$stats"; then
    ok "offloadctl stats talks to offloadd over /run/offload/offloadd.sock"
else
    not_ok "offloadctl stats talks to offloadd" "$(tr '\n' ' ' <<<"$stats")"
fi
check "offloadctl conntrack list talks to offloadd" in_root offloadctl conntrack list
sock_mode=$(stat -c '%U %a %F' "$root/run/offload/offloadd.sock" 2>&1)
if [[ $sock_mode == "root 600 socket" ]]; then ok "the control socket is root's, mode 0600"; else not_ok "the control socket is root's, mode 0600" "$sock_mode"; fi
nobody_out=$(in_root setpriv --reuid=65534 --regid=65534 --clear-groups offloadctl stats 2>&1) && nobody_rc=0 || nobody_rc=$?
if ((nobody_rc == 1)) && [[ $nobody_out == *"permission denied: only root (or offloadd's user) may use the control socket"* ]]; then
    ok "a user other than root cannot talk to offloadd (offloadctl exit 1, saying why)"
else
    not_ok "a user other than root cannot talk to offloadd" "exit $nobody_rc: $nobody_out"
fi
helpers=$(in_root offloadctl helper list 2>&1 || true)
if grep -qE '^callback +/etc/offload/helpers.d/CallbackHelper.cs .*tcp/111 .*enabled' <<<"$helpers"; then
    ok "the packaged daemon compiled and loaded the .cs helper dropped into /etc/offload/helpers.d"
else
    not_ok "the packaged daemon loads the .cs helper from /etc/offload/helpers.d" "$(tr '\n' ' ' <<<"$helpers")"
fi

# Reload: RELOADING=1 with the time it began (CLOCK_MONOTONIC, which systemd compares), then READY=1.
lines=$(wc -l <"$notify")
t_before=$(python3 -c 'import time; print(time.monotonic_ns() // 1000)')
kill -HUP "$daemon_pid"
if wait_for "$dlog" 'Reloaded ' 20 >/dev/null && wait_for "$notify" 'RELOADING=1' 10 >/dev/null && sleep 0.3; then
    mapfile -t after < <(tail -n +"$((lines + 1))" "$notify")
    reloading=${after[0]-}
    usec=$(grep -oE 'MONOTONIC_USEC=[0-9]+' <<<"$reloading" | cut -d= -f2 || true)
    received=${reloading%% *}
    if [[ $reloading == *" RELOADING=1|MONOTONIC_USEC="* && -n $usec ]] && ((usec >= t_before && usec <= received)) && [[ ${after[1]-} == *" READY=1" ]]; then
        ok "SIGHUP: RELOADING=1 with MONOTONIC_USEC of the reload's start, then READY=1"
    else
        not_ok "SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1" "sent after $t_before: ${after[*]}"
    fi
else
    not_ok "SIGHUP reloads and tells systemd" "log: $(tail -n 2 "$dlog" | tr '\n' ' ')"
fi

# A plugin file another user may write is refused at the next reload, with the path, owner and mode logged.
install -m 0646 "$repo/examples/helpers/callback/CallbackHelper.cs" "$root/etc/offload/helpers.d/Loose.cs"
lines=$(wc -l <"$dlog")
kill -HUP "$daemon_pid"
for _ in $(seq 1 200); do tail -n +"$((lines + 1))" "$dlog" | grep -q 'Reloaded ' && break; sleep 0.1; done
if tail -n +"$((lines + 1))" "$dlog" | grep -q "Plugin not loaded: /etc/offload/helpers.d/Loose.cs: refused (strict modes): the file is writable by others (owner uid 0, mode 0646)" &&
    grep -q '^plugins: 1 loaded, 1 refused by strict modes' <<<"$(in_root offloadctl stats 2>&1)"; then
    ok "a plugin in helpers.d writable by others is refused on reload, logged with its mode and counted"
else
    not_ok "a plugin writable by others is refused on reload" "$(tail -n +"$((lines + 1))" "$dlog" | grep -i -m2 'loose\|strict' | tr '\n' ' ')"
fi
rm -f "$root/etc/offload/helpers.d/Loose.cs"

# A second daemon cannot bind the queues the first holds: it must fail, and never say READY=1.
notify2=$work/notify2.log
start_listener "@ol-notify2$sfx" "$notify2"
rc2=0
timeout 60 "${innet[@]}" chroot "$root" /usr/bin/env -i --default-signal=HUP PATH=/usr/sbin:/usr/bin:/sbin:/bin NOTIFY_SOCKET="@ol-notify2$sfx" \
    "${cmd[@]}" --socket /run/offload/second.sock </dev/null >"$work/second.log" 2>&1 || rc2=$?
sleep 0.3
if ((rc2 == 1)) && grep -q 'cannot start' "$work/second.log" && ! grep -q 'READY=1' "$notify2"; then
    ok "a daemon whose queues cannot be bound exits 1 and never sends READY=1"
else
    not_ok "a daemon whose queues cannot be bound exits 1 and never sends READY=1" "exit $rc2, notified: $(tr '\n' ' ' <"$notify2"), $(tail -n 2 "$work/second.log" | tr '\n' ' ')"
fi
if [[ -n $(steering_rules) ]] && in_root offloadctl stats >/dev/null 2>&1; then
    ok "the failed second start left the running daemon and its rules alone"
else
    not_ok "the failed second start left the running daemon and its rules alone" "rules: $(steering_rules | wc -l), stats: $(in_root offloadctl stats 2>&1 | head -n 1)"
fi

lines=$(wc -l <"$notify")
stop_daemon
sleep 0.3
if [[ $stop_rc == 0 ]] && tail -n +"$((lines + 1))" "$notify" | grep -q ' STOPPING=1|STATUS=stopping (SIGTERM)'; then
    ok "SIGTERM: STOPPING=1, then exit 0"
else
    not_ok "SIGTERM: STOPPING=1, then exit 0" "exit $stop_rc, notified: $(tail -n +"$((lines + 1))" "$notify" | tr '\n' ' ')"
fi
# The rules stay when the daemon stops: a restart or an upgrade must not let a steered packet out untranslated. Its
# state waits beside the socket for the next start.
if [[ -n $(steering_rules) && ! -e $root/run/offload/offloadd.sock && -s $root/run/offload/state ]]; then
    ok "stopping keeps the rules (fail closed until the next start), removes the control socket, saves the state"
else
    not_ok "stopping keeps the rules, removes the control socket, saves the state" "rules: $(steering_rules | wc -l), /run/offload: $(ls "$root/run/offload" 2>&1 | tr '\n' ' ')"
fi
# In the lab's network namespace, where the rules are (in_root alone runs in the host's).
"${innet[@]}" chroot "$root" /usr/bin/env -i --default-signal=HUP PATH=/usr/sbin:/usr/bin:/sbin:/bin offloadctl rules remove >/dev/null 2>&1 ||
    not_ok "offloadctl rules remove after the stop" "failed"

# "Unless configured otherwise": the administrator takes --apply-rules out of /etc/default/offload. This run's
# standard output is a journal-like stream, to see the journal's format: priorities, no time.
sed -i 's/^OFFLOADD_ARGS=.*/OFFLOADD_ARGS=""/' "$root/etc/default/offload"
mapfile -t cmd < <(unit_command)
jlog=$work/journal.log
lines=$(wc -l <"$notify")
python3 "$work/journal.py" "$jlog" "${innet[@]}" chroot "$root" /usr/bin/env -i --default-signal=HUP PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    @JOURNAL_STREAM@ NOTIFY_SOCKET="@ol-notify$sfx" "${cmd[@]}" &
pids+=($!)
for _ in $(seq 1 50); do [[ -s $jlog.pid ]] && break; sleep 0.1; done
daemon_pid=$(cat "$jlog.pid" 2>/dev/null || true)
dlog=$jlog
if wait_for "$jlog" 'Ready: ' 40 >/dev/null && wait_for "$notify" 'READY=1' 5 >/dev/null; then
    if [[ -z $(steering_rules) ]] && in_root offloadctl stats >/dev/null 2>&1; then
        ok "OFFLOADD_ARGS=\"\" in /etc/default/offload: the daemon serves, no rules applied"
    else
        not_ok "OFFLOADD_ARGS=\"\" in /etc/default/offload: the daemon serves, no rules applied" "$(steering_rules | tr '\n' ' ')"
    fi
    if grep -qE '^<6>Ready: queues 10 \(before routing\)' "$jlog" && ! grep -qvE '^<[0-7]>' "$jlog" && ! grep -qE '[0-9]{2}:[0-9]{2}:[0-9]{2}' "$jlog"; then
        ok "to the journal: every line has its syslog priority (<6> information) and no time of its own"
    else
        not_ok "to the journal: priorities, no time" "$(head -n 3 "$jlog" | tr '\n' ' ')"
    fi
    if grep -qE '^[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3} \[INF\] Ready: ' "$work/offloadd.log"; then
        ok "to a file: the time and the level, as before"
    else
        not_ok "to a file: the time and the level" "$(head -n 2 "$work/offloadd.log" | tr '\n' ' ')"
    fi
else
    not_ok "OFFLOADD_ARGS=\"\": the daemon starts" "$(tail -n 3 "$jlog" | tr '\n' ' ')"
fi
# The daemon is journal.py's child, not ours: stop it, then wait for journal.py.
kill -TERM "$daemon_pid" 2>/dev/null || true
wait "${pids[-1]}" || true
daemon_pid=

# Least privilege (docs/packaging.md): the packaged daemon also runs as a user of its own with CAP_NET_ADMIN and
# CAP_NET_RAW alone (ambient, as AmbientCapabilities= gives them), in helpers mode, whose `-m set` rules need
# CAP_NET_RAW. setpriv gives it the credentials a `User=`/`DynamicUser=` drop-in would (systemd is not PID 1 here).
sed 's/^  # flows: [a-z]* .*/  flows: helpers/' "$root/etc/offload/offloadd.yaml" >"$root/tmp/user.yaml"
mkdir -p "$root/run/offload-user"
chown 65534:65534 "$root/run/offload-user"
chmod 0750 "$root/run/offload-user"
ulog=$work/offloadd-user.log
caps=-all,+net_admin,+net_raw
"${innet[@]}" chroot "$root" /usr/bin/env -i --default-signal=HUP PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=$caps --ambient-caps=$caps --bounding-set=$caps \
    /usr/sbin/offloadd --config /tmp/user.yaml --apply-rules --remove-rules-on-stop --socket /run/offload-user/offloadd.sock </dev/null >"$ulog" 2>&1 &
daemon_pid=$!
dlog=$ulog
if wait_for "$ulog" '\] Ready: ' 40 >/dev/null; then
    user_stats=$(in_root offloadctl stats --socket /run/offload-user/offloadd.sock 2>&1 || true)
    user_helpers=$(in_root offloadctl helper list --socket /run/offload-user/offloadd.sock 2>&1 || true)
    if [[ -n $(steering_rules) && $(offload_sets | wc -l) == 2 ]] && grep -q '^queue 10 (pre routing)' <<<"$user_stats" &&
        grep -q 'kernel: counters unreadable' <<<"$user_stats" && grep -qE '^callback .*enabled$' <<<"$user_helpers"; then
        ok "as uid 65534 with CAP_NET_ADMIN and CAP_NET_RAW only: queues bound, helpers-mode rules and sets applied, plugin loaded, answers root"
    else
        not_ok "as an unprivileged user with CAP_NET_ADMIN and CAP_NET_RAW" "rules $(steering_rules | wc -l), sets $(offload_sets | tr '\n' ' '); $(head -n 2 <<<"$user_stats" | tr '\n' ' ') $(grep -E '^callback' <<<"$user_helpers")"
    fi
else
    not_ok "as an unprivileged user with CAP_NET_ADMIN and CAP_NET_RAW, offloadd starts" "$(tail -n 3 "$ulog" | tr '\n' ' ')"
fi
stop_daemon
if [[ $stop_rc == 0 && -z $(steering_rules) && -z $(offload_sets) ]]; then
    ok "as that user, SIGTERM removes its rules and sets, exit 0"
else
    not_ok "as that user, SIGTERM removes its rules and sets" "exit $stop_rc; rules $(steering_rules | wc -l), sets $(offload_sets | tr '\n' ' ')"
fi
info "daemon runs done at $((SECONDS - t_start)) s"

# --- upgrade, while transfers run through the daemon ---------------------------------------------------

# As Debian upgrades the running service under systemd (see the maintainer scripts' check above): the old daemon
# keeps running while dpkg unpacks the new files over it (prerm upgrade does not stop it), then postinst's
# try-restart stops it (SIGTERM) and starts the new build, which takes the state the old one saved. The transfers
# (FTP in four modes, a long stream: tests/lab/transfers.sh) run through it all with the shipped configuration
# (flows: all, MASQUERADE, the FTP helper) and must complete intact, with no private source address on the WAN.
# OFFLOADD_ARGS is "" now (the administrator's edit above, which the upgrade must keep): --apply-rules is given here.
lab_vsftpd_uploads "$sfx" 2>/dev/null || die "vsftpd did not start in the lab's server"
rm -f "$root/run/offload/state"
old_pid_log=$work/offloadd-old.log
"${innet[@]}" chroot "$root" /usr/bin/env -i --default-signal=HUP PATH=/usr/sbin:/usr/bin:/sbin:/bin "${cmd[@]}" --apply-rules \
    </dev/null >"$old_pid_log" 2>&1 &
daemon_pid=$!
dlog=$old_pid_log
wait_for "$old_pid_log" '\] Ready: ' 40 >/dev/null || die "offloadd $v1 did not start for the upgrade: $(tail -n 3 "$old_pid_log")"
h_capture_start "$ns" wan0 "$work/upgrade-wan0.pcapng"
# Slower than the restart lab's: unpacking a self-contained build takes apt long enough that those ended first.
TR_FTP_RATE=12k TR_STREAM_RATE=25000 tr_start "$sfx" "$work" || die "the transfers did not start"
sleep 3

# confold/confdef: what an unattended upgrade answers when a conffile changed on both sides.
check "apt upgrades offload to $v2 while offloadd $v1 carries transfers" in_root apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "/tmp/${deb2##*/}"
if running "$daemon_pid" && tr_all_running && in_root offloadctl stats >/dev/null 2>&1; then
    ok "the old daemon serves on while dpkg replaces its files, every transfer still running"
else
    not_ok "the old daemon serves on while dpkg replaces its files" "daemon $(running "$daemon_pid" && echo runs || echo exited), transfers $(tr_all_running && echo run || echo ended): $(tail -n 3 "$old_pid_log" | tr '\n' ' ')"
fi
stop_daemon
new_log=$work/offloadd-new.log
"${innet[@]}" chroot "$root" /usr/bin/env -i --default-signal=HUP PATH=/usr/sbin:/usr/bin:/sbin:/bin "${cmd[@]}" --apply-rules \
    </dev/null >"$new_log" 2>&1 &
daemon_pid=$!
dlog=$new_log
restored=$(wait_for "$new_log" 'State (restored|snapshot .* refused)' 40 || true)
n=$(sed -n 's/.*: \([0-9]*\) connections, [0-9]* expectations.*/\1/p' <<<"$restored")
if [[ $stop_rc == 0 && $restored == *'State restored'* ]] && ((${n:-0} >= 7)); then
    ok "try-restart: $v1 stopped (exit 0), $v2 started with its state (${n} connections restored)"
else
    not_ok "try-restart: the old build stops, the new one starts with its state" "stop: $stop_rc; ${restored:-no restore logged}; old: $(tail -n 4 "$old_pid_log" | tr '\n' ' '); new: $(tail -n 3 "$new_log" | tr '\n' ' ')"
fi
tr_wait
for k in "${TR_KEYS[@]}"; do
    why=$(tr_intact "$k")
    if [[ -z $why ]]; then ok "${TR_WHAT[$k]}: complete and byte-identical across the upgrade"; else not_ok "${TR_WHAT[$k]} across the upgrade" "$why"; fi
done
h_capture_stop >/dev/null
h_wan_clean "wan0 across the upgrade" "$work/upgrade-wan0.pcapng" "ip.src==$LAB_WAN4_ROUTER || ipv6.src==$LAB_WAN6_ROUTER" 1000 \
    "$LAB_LAN4_PREFIX" "$LAB_LAN6_PREFIX"
stop_daemon
"${innet[@]}" chroot "$root" /usr/bin/env -i --default-signal=HUP PATH=/usr/sbin:/usr/bin:/sbin:/bin offloadctl rules remove >/dev/null 2>&1 ||
    not_ok "offloadctl rules remove after the upgrade's run" "failed"
lab_vsftpd_stop "$sfx"
if [[ $(installed_version) == "installed $v2" && $(in_root offloadd --version 2>&1) == "$v2" ]]; then
    ok "offload $v2 is installed and runs"
else
    not_ok "offload $v2 is installed and runs" "$(installed_version)"
fi
cfg=$root/etc/offload/offloadd.yaml
if grep -q '^  queue-pre: 10 ' "$cfg" && grep -q '^# edited by the administrator$' "$cfg" && ! grep -q 'upgrade test build' "$cfg"; then
    ok "the upgrade kept the administrator's /etc/offload/offloadd.yaml"
else
    not_ok "the upgrade kept the administrator's /etc/offload/offloadd.yaml" "$(grep -E 'queue-pre|administrator|upgrade test' "$cfg" | tr '\n' ' ')"
fi
if grep -q 'upgrade test build' "$cfg.dpkg-dist" 2>/dev/null; then
    ok "the new default configuration waits beside it (offloadd.yaml.dpkg-dist)"
else
    not_ok "the new default configuration waits beside it" "$(ls "$root/etc/offload")"
fi
if grep -qx 'OFFLOADD_ARGS=""' "$root/etc/default/offload"; then
    ok "the upgrade kept the administrator's /etc/default/offload"
else
    not_ok "the upgrade kept the administrator's /etc/default/offload" "$(grep OFFLOADD_ARGS "$root/etc/default/offload")"
fi

# --- remove and purge ------------------------------------------------------------------------------

# The service runs, with its rules, when the package is removed: prerm must stop it (here, without systemd,
# by SIGTERM), and postrm removes the rules the daemon leaves.
sed -i 's/^OFFLOADD_ARGS=.*/OFFLOADD_ARGS="--apply-rules"/' "$root/etc/default/offload"
mapfile -t cmd < <(unit_command)
dlog=$work/offloadd-3.log
"${innet[@]}" chroot "$root" /usr/bin/env -i --default-signal=HUP PATH=/usr/sbin:/usr/bin:/sbin:/bin "${cmd[@]}" </dev/null >"$dlog" 2>&1 &
daemon_pid=$!
wait_for "$dlog" '\] Ready: ' 40 >/dev/null || not_ok "offloadd $v2 starts" "$(tail -n 3 "$dlog" | tr '\n' ' ')"
[[ -n $(steering_rules) ]] || not_ok "offloadd $v2 applied its rules" "none"
# Rules as `offloadctl rules apply` would make them in helpers mode, to put back after the removal: what a
# daemon killed with SIGKILL, or an administrator, leaves behind.
sed 's/^  # flows: [a-z]* .*/  flows: helpers/' "$cfg" >"$root/tmp/helpers.yaml"
in_root offloadctl rules print -c /tmp/helpers.yaml >"$work/leftover.rules" || die "offloadctl rules print failed"
files=$(in_root dpkg -L offload)

check "dpkg --remove offload (in the router's namespace)" in_ns chroot "$root" /usr/bin/env -i --default-signal=HUP PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg --remove offload
if ! running "$daemon_pid"; then
    stop_rc=0
    wait "$daemon_pid" || stop_rc=$?
    daemon_pid=
    if [[ $stop_rc == 0 ]] && grep -q 'State saved to ' "$dlog"; then
        ok "prerm stopped the running offloadd, which saved its state and exited 0"
    else
        not_ok "prerm stopped the running offloadd, which saved its state and exited 0" "exit $stop_rc; $(tail -n 2 "$dlog" | tr '\n' ' ')"
    fi
else
    not_ok "prerm stopped the running offloadd" "still running"
fi
if [[ -z $(steering_rules) ]]; then
    ok "no steering rule is left after the removal"
else
    not_ok "no steering rule is left after the removal" "$(steering_rules | tr '\n' ' ')"
fi

# Leftovers for postrm to find: the helpers-mode rules and sets, loaded by hand.
{
    in_ns ipset create offload4 hash:ip,port,ip family inet timeout 0 -exist &&
        in_ns ipset create offload6 hash:ip,port,ip family inet6 timeout 0 -exist &&
        awk '/^# offloadd steering rules \(IPv6\)/ { exit } { print }' "$work/leftover.rules" | in_ns iptables-restore --noflush &&
        in_ns iptables -w -t raw -I PREROUTING 1 -j OFFLOAD-PRE &&
        in_ns iptables -w -t mangle -I POSTROUTING 1 -j OFFLOAD-POST
} || die "could not load the leftover rules"
[[ -n $(steering_rules) && -n $(offload_sets) ]] || die "the leftover rules are not there"

check "dpkg --purge offload (in the router's namespace)" in_ns chroot "$root" /usr/bin/env -i --default-signal=HUP PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg --purge offload
# shellcheck disable=SC2016
if ! in_root dpkg-query -W -f='${db:Status-Status}' offload 2>/dev/null | grep -qv not-installed; then
    ok "dpkg knows offload no more"
else
    not_ok "dpkg knows offload no more" "$(installed_version)"
fi
left=
while IFS= read -r f; do
    [[ -n $f && $f != /. ]] || continue
    if [[ -d $root$f ]]; then
        # Directories (and the usr-merge links /lib, /bin...) are shared, but for the package's own.
        [[ $f == */offload || $f == */offload/* ]] && left+="$f/ "
    elif [[ -e $root$f || -L $root$f ]]; then
        left+="$f "
    fi
done <<<"$files"
for f in /etc/offload /usr/lib/offload /run/offload /var/lib/offload /etc/default/offload /usr/share/doc/offload; do
    [[ -e $root$f ]] && left+="$f "
done
left+=$(find "$root/etc/systemd" "$root/var/lib/systemd" -name '*offloadd*' -printf '%p ' 2>/dev/null || true)
if [[ -z $left ]]; then ok "purge left no file of the package behind (dpkg -L, /etc/offload, /run/offload, systemd state)"; else not_ok "purge left no file behind" "$left"; fi
if [[ -z $(steering_rules) ]]; then ok "purge left no OFFLOAD-* chain or jump (postrm removed the leftovers)"; else not_ok "purge left no OFFLOAD-* chain" "$(steering_rules | tr '\n' ' ')"; fi
if [[ -z $(offload_sets) ]]; then ok "purge left no offload* ipset set"; else not_ok "purge left no offload* ipset set" "$(offload_sets | tr '\n' ' ')"; fi
# Nothing runs in the root any more (a process's root directory is the chroot's).
left_running=
for p in /proc/[0-9]*; do
    [[ $(readlink "$p/root" 2>/dev/null) == "$root" ]] && running "${p#/proc/}" && left_running+="${p#/proc/}:$(cat "$p/comm" 2>/dev/null) "
done
if [[ -z $left_running ]]; then ok "nothing of the package runs any more"; else not_ok "nothing of the package runs any more" "$left_running"; fi

info "test-deb took $((SECONDS - t_start)) s"
finished=1
