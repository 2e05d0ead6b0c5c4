#!/usr/bin/env bash
# Capture control and checks shared by the lab's recorders (sourced, after lab.sh). The sourcing script
# provides: $sfx (the lab suffix), $work (its temporary folder), $all_cpus (the CPUs tshark may use), $out_dir,
# $here, $repo, the array all_scenarios, a function run_scenario NAME, a `dumpcap_pid` variable its cleanup stops,
# and `die MESSAGE`.
#
# Two styles of recording (CAPTURE_STYLE):
# - user (the default): as users record their routers. Every veth end keeps the kernel's default offloads
#   (checksum offload, TSO/GSO: packets leaving a host carry only the pseudo-header sum in their TCP/UDP checksum,
#   and TCP segments larger than the MTU cross the router whole), and the file stays as dumpcap wrote it, per
#   interface batches out of time order. `offloadctl replay` must take it as it is.
# - reference: every offload off and the file sorted by timestamp (reordercap), so that tshark and
#   check-ip-captures.sh can verify every checksum and the forwarding order. tests/data/ftp and tests/data/nat hold
#   these.

capture_style=${CAPTURE_STYLE:-user}
case $capture_style in
user)
    # The reference folders are checked as reference captures (check-ip-captures.sh in scripts/test).
    case $(realpath -m "$out_dir") in
    "$repo"/tests/data/ftp | "$repo"/tests/data/nat)
        die "$out_dir holds reference captures: record them with CAPTURE_STYLE=reference, or give OUT_DIR"
        ;;
    esac
    ;;
reference) ;;
*) die "CAPTURE_STYLE must be user or reference, not '$capture_style'" ;;
esac

# --- offloads --------------------------------------------------------------------------

# capture_offloads : in user style, gives every veth end of the lab the offloads a new veth has (lab_up turns
# them all off). GRO stays off, as on a new veth: the super-packets come from TSO.
capture_offloads() {
    [[ $capture_style == user ]] || return 0
    local end ns dev state
    for end in "client eth0" "router lan0" "router wan0" "server eth0"; do
        ns=$(lab_ns "${end% *}" "$sfx")
        dev=${end#* }
        ip netns exec "$ns" ethtool -K "$dev" tx on sg on tso on gso on >/dev/null 2>&1 ||
            die "ethtool -K $dev on failed in $ns"
        ip netns exec "$ns" ethtool -K "$dev" tx-udp-segmentation on >/dev/null 2>&1 || true
        state=$(ip netns exec "$ns" ethtool -k "$dev")
        grep -q '^tx-checksumming: on' <<<"$state" && grep -q '^tcp-segmentation-offload: on' <<<"$state" ||
            die "$ns/$dev: checksum offload or TSO did not come on"
    done
}

# --- capture control ---------------------------------------------------------------

# start_capture FILE : dumpcap in the router on lan0 and wan0, no promiscuous
# mode, full snaplen, pcapng. Returns once both interfaces are open.
start_capture() {
    local file=$1 r deadline
    r=$(lab_ns router "$sfx")
    : >"$work/dumpcap.log"
    # `ip netns exec` execs dumpcap in place: $! is dumpcap's pid.
    ip netns exec "$r" dumpcap -q -p -s 262144 -i lan0 -i wan0 -w "$file" \
        </dev/null >"$work/dumpcap.log" 2>&1 &
    dumpcap_pid=$!
    # dumpcap names the file only after every interface is open.
    deadline=$((SECONDS + 10))
    until grep -q '^File: ' "$work/dumpcap.log"; do
        kill -0 "$dumpcap_pid" 2>/dev/null || {
            cat "$work/dumpcap.log" >&2
            die "dumpcap exited early"
        }
        ((SECONDS < deadline)) || die "dumpcap did not start"
        sleep 0.05
    done
    lab_wait_capture "$r" 2 || die "dumpcap is not capturing"
}

# stop_capture FILE : SIGINT (dumpcap's clean stop: it drains its buffers and
# writes the interface statistics blocks), wait for it, check it closed cleanly.
stop_capture() {
    local file=$1 pid=$dumpcap_pid rc=0
    kill -INT "$pid"
    for _ in $(seq 1 200); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        die "dumpcap did not stop on SIGINT"
    fi
    wait "$pid" || rc=$?
    dumpcap_pid=
    ((rc == 0)) || {
        cat "$work/dumpcap.log" >&2
        die "dumpcap exited with $rc"
    }
    # A cleanly closed dumpcap file ends with one statistics block per interface.
    [[ $(capinfos "$file" 2>/dev/null | grep -c 'Number of stat entries = 1') == 2 ]] ||
        die "$file: no interface statistics: dumpcap did not close it cleanly"
    if ! grep -q "dropped on interface 'lan0': [0-9]*/0 " "$work/dumpcap.log" ||
        ! grep -q "dropped on interface 'wan0': [0-9]*/0 " "$work/dumpcap.log"; then
        cat "$work/dumpcap.log" >&2
        die "dumpcap reports dropped packets"
    fi
}

# finish_capture RAW NAME : sets $capture to the file the scenario's checks read and keep_capture keeps: in user
# style the file as dumpcap wrote it, in reference style a copy sorted by timestamp.
finish_capture() {
    local raw=$1 name=$2
    if [[ $capture_style == user ]]; then
        capture=$raw
        return 0
    fi
    capture=$work/$name.pcapng
    reordercap "$raw" "$capture" >/dev/null 2>&1 || die "$name: reordercap failed"
    capinfos -o "$capture" 2>/dev/null | grep -q 'Strict time order: *True' ||
        die "$name: not in time order after reordercap"
}

# --- checks on a finished capture ----------------------------------------------------

# count FILE FILTER : frames matching a display filter.
count() {
    taskset -c "$all_cpus" tshark -n -r "$1" -Y "$2" -T fields -e frame.number 2>/dev/null | wc -l
}

# expect FILE N FILTER : exactly N frames match.
expect() {
    local file=$1 want=$2 filter=$3 got
    got=$(count "$file" "$filter")
    [[ $got == "$want" ]] || die "$(basename "$file"): expected $want frame(s) matching [$filter], found $got"
}

# --- recording ----------------------------------------------------------------------

# keep_capture FILE NAME : the checked capture goes to $out_dir/NAME.pcapng, and the scenario's lab goes.
keep_capture() {
    local file=$1 name=$2
    install -m 0644 "$file" "$out_dir/$name.pcapng"
    lab_down "$sfx"
    echo "   $name.pcapng: $(count "$out_dir/$name.pcapng" "frame") frames, $(stat -c %s "$out_dir/$name.pcapng") bytes" >&2
}

# record_scenarios [NAME...] : runs the scenarios named (default: all), then checks every capture they made.
record_scenarios() {
    local scenarios=("$@") s recorded=()
    ((${#scenarios[@]})) || scenarios=("${all_scenarios[@]}")
    for s in "${scenarios[@]}"; do
        run_scenario "$s"
    done

    taskset -cp "$all_cpus" $$ >/dev/null
    for s in "${scenarios[@]}"; do recorded+=("$out_dir/$s.pcapng"); done
    if [[ $capture_style == reference ]]; then
        "$here/check-ip-captures.sh" "${recorded[@]}"
    else
        check_user_captures "${recorded[@]}"
    fi
}

# check_user_captures FILE... : what a user-style capture must be: whole frames (full snaplen). Reports, per file,
# whether dumpcap left it out of time order and how many super-packets (frames above 1514 bytes) it holds; the
# replay's kernel-comparison tests are what check its contents.
check_user_captures() {
    local f order big cut
    for f in "$@"; do
        order=$(capinfos -o "$f" 2>/dev/null | sed -n 's/^Strict time order: *//p')
        big=$(count "$f" "frame.len > 1514")
        cut=$(count "$f" "frame.cap_len < frame.len")
        ((cut == 0)) || die "$(basename "$f"): $cut truncated frame(s)"
        echo "   $(basename "$f"): strict time order $order, $big super-packet(s)" >&2
    done
}
