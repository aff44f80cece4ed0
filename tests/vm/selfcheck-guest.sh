#!/bin/bash
# Runs INSIDE the test VM (via tests/vm/selfcheck.sh).  Proves the guest has
# what the lab tests rely on.  Exits 3 when everything works (a distinctive
# status, so the host side also proves exit-status propagation), 1 otherwise.
set -uo pipefail

fails=0
T0=${EPOCHREALTIME/./}      # microseconds
step() { local ms=$(( (${EPOCHREALTIME/./} - T0) / 1000 )); echo; echo "=== [${ms}ms] $*"; }
ok()   { echo "OK: $*"; }
bad()  { echo "FAIL: $*"; fails=$((fails + 1)); }
# run CMD...: show and run a command, record failure instead of aborting.
run()  { echo "+ $*"; "$@" || { bad "$*"; return 1; }; }

PY=${VM_REPO:?}/.venv/bin/python

step "environment"
uname -r
[ "$(uname -r)" = "${EXPECT_KVER:-}" ] && ok "guest kernel is $EXPECT_KVER" || bad "uname -r is $(uname -r), expected ${EXPECT_KVER:-?}"
[ "${NETSETUP_VM:-}" = 1 ] && ok "NETSETUP_VM=1" || bad "NETSETUP_VM not set"
case ":$PATH:" in *":$VM_REPO/.venv/bin:"*) ok "venv on PATH" ;; *) bad "venv not on PATH ($PATH)" ;; esac
[ "$(pwd)" = "$VM_REPO" ] && ok "cwd is the repo" || bad "cwd is $(pwd)"
touch /tmp/x /run/x /root/x /var/tmp/x "$VM_REPO/.vm-write-test" && ok "scratch dirs and repo writable (guest-only)" || bad "writable dirs"

step "wireguard module + pyroute2 genl family"
lsmod | grep wireguard || bad "wireguard not in lsmod"
run ip link add wgt type wireguard && run ip link show wgt
run "$PY" -c 'import pyroute2; from pyroute2 import WireGuard; print(WireGuard().info("wgt"))'

step "network namespaces, veth, bridge"
run ip netns add x
run ip netns add y
run ip netns exec x ip link set lo up
run ip netns exec x ip -br link
run ip link add br0 type bridge
run ip link add vx type veth peer name vx-br
run ip link add vy type veth peer name vy-br
run ip link set vx netns x
run ip link set vy netns y
for p in vx-br vy-br; do run ip link set "$p" master br0 up; done
run ip link set br0 up
run ip -n x addr add 10.99.0.1/24 dev vx
run ip -n y addr add 10.99.0.2/24 dev vy
run ip -n x link set vx up
run ip -n y link set vy up
run ip netns exec x ping -c 2 -W 5 10.99.0.2

step "nftables: inet table with a set, ct state and counters"
cat >/tmp/t.nft <<'EOF'
table inet vmcheck {
    set allowed {
        type ipv4_addr
        elements = { 10.99.0.1 }
    }
    chain input {
        type filter hook input priority 0; policy drop;
        ct state established,related counter accept
        iif lo accept
        ip saddr @allowed icmp type echo-request counter accept
        counter reject
    }
}
EOF
run ip netns exec y nft -f /tmp/t.nft
run ip netns exec x ping -c 2 -W 5 10.99.0.2
run ip netns exec y nft list ruleset
if ip netns exec y nft list ruleset | grep -q 'icmp type echo-request counter packets [1-9]'; then
    ok "counter counted the pings"
else
    bad "counter did not count"
fi
# A source outside the set must be rejected.
run ip -n x addr add 10.99.0.3/24 dev vx
if ip netns exec x ping -c 1 -W 2 -I 10.99.0.3 10.99.0.2 >/dev/null 2>&1; then
    bad "ping from 10.99.0.3 should have been rejected"
else
    ok "ping from an address outside the set rejected"
fi

step "wireguard tunnel between two namespaces"
kx=$(wg genkey); ky=$(wg genkey)
px=$(echo "$kx" | wg pubkey); py=$(echo "$ky" | wg pubkey)
run ip -n x link add wg0 type wireguard
run ip -n y link add wg0 type wireguard
run ip netns exec x wg set wg0 private-key <(echo "$kx") listen-port 51820 peer "$py" endpoint 10.99.0.2:51821 allowed-ips 10.98.0.2/32
run ip netns exec y wg set wg0 private-key <(echo "$ky") listen-port 51821 peer "$px" endpoint 10.99.0.1:51820 allowed-ips 10.98.0.1/32
run ip -n x addr add 10.98.0.1/24 dev wg0
run ip -n y addr add 10.98.0.2/24 dev wg0
run ip -n x link set wg0 up
run ip -n y link set wg0 up
# y's nft table drops new UDP and pings from outside @allowed: let the
# tunnel port and x's tunnel address in.
run ip netns exec y nft insert rule inet vmcheck input udp dport 51821 accept
run ip netns exec y nft add element inet vmcheck allowed '{ 10.98.0.1 }'
run ip netns exec x ping -c 2 -W 5 10.98.0.2
run ip netns exec x wg show wg0 latest-handshakes

step "mount namespaces"
run unshare --mount --propagation private sh -c 'mount -t tmpfs vmcheck /mnt && findmnt /mnt'
findmnt /mnt >/dev/null && bad "private mount leaked to the parent namespace" || ok "private mount stayed private"
for t in / /run /run/netns /tmp /lib/modules/"$(uname -r)"; do
    findmnt -n -o TARGET,FSTYPE,PROPAGATION --mountpoint "$t"
done

step "ptys and cgroups"
run script -qec 'tty' /dev/null
findmnt -n -o FSTYPE --mountpoint /sys/fs/cgroup | grep -qx cgroup2 && ok "cgroup2 at /sys/fs/cgroup" || bad "no cgroup2"

step "sshd"
[ -d /run/sshd ] && ok "/run/sshd exists" || bad "/run/sshd missing"
run /usr/sbin/sshd -t
run /usr/sbin/sshd -p 2222 -o ListenAddress=127.0.0.1 -o PidFile=/run/vmcheck-sshd.pid
sleep 1
run ssh-keyscan -T 5 -p 2222 127.0.0.1
[ -f /run/vmcheck-sshd.pid ] && kill "$(cat /run/vmcheck-sshd.pid)"

step "done"

echo
if [ $fails -eq 0 ]; then
    echo "SELFCHECK: all checks passed (exiting 3 on purpose)"
    exit 3
fi
echo "SELFCHECK: $fails check(s) FAILED"
exit 1
