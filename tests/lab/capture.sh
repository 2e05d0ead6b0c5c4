#!/usr/bin/env bash
# Capture control and checks shared by the lab's recorders (sourced, after lab.sh). The sourcing script
# provides: $sfx (the lab suffix), $work (its temporary folder), $all_cpus (the CPUs tshark may use), $out_dir,
# $here, the array all_scenarios, a function run_scenario NAME, a `dumpcap_pid` variable its cleanup stops, and
# `die MESSAGE`.

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

# keep_capture SORTED NAME : the checked capture goes to $out_dir/NAME.pcapng, and the scenario's lab goes.
keep_capture() {
    local sorted=$1 name=$2
    install -m 0644 "$sorted" "$out_dir/$name.pcapng"
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
    "$here/check-ip-captures.sh" "${recorded[@]}"
}
